"""`/agent/*`: the routes nodes call. Each decodes a Struct and calls one service."""

from __future__ import annotations

import asyncio
from typing import Annotated

from litestar import Controller, Request, Response, head, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from gridx.coordinator.api.deps import client_address
from gridx.coordinator.api.ranges import offset_header, upload_part
from gridx.coordinator.errors import RateLimited
from gridx.coordinator.services import dispatch, enrolment, nodes, results, resumable, retention
from gridx.coordinator.services.principals import Node
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.agent import (
    CompleteTaskRequest,
    FailTaskRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    TaskAck,
    TaskAssignment,
    UploadLink,
    UploadLinkRequest,
    UploadResponse,
)


async def _hang_up(request: Request) -> None:
    """Resolves when the client disconnects (the body, if any, is read and dropped)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class AgentController(Controller):
    """Node enrolment, liveness, task dispatch and results."""

    path = "/agent"
    tags = ["agent"]

    @post("/register", status_code=201)
    async def register(
        self, request: Request, data: RegisterRequest, rt: Runtime
    ) -> RegisterResponse:
        """Enrol a node; authenticated with an enrolment token of its owner's (an API key is
        accepted with a warning). The node's token is shown once."""
        if not rt.rate_limits.allow(
            f"register:{client_address(request)}", rt.settings.register_per_minute
        ):
            raise RateLimited("too many node registrations from this address; wait a minute")
        owner, warning = await enrolment.enrolling_owner(rt, request.headers.get("authorization"))
        return await nodes.register(rt, owner, data, warning)

    @post("/heartbeat", status_code=200)
    async def heartbeat(self, data: HeartbeatRequest, rt: Runtime, node: Node) -> HeartbeatResponse:
        """Keep the node and its leases alive; answers which tasks to stop."""
        return await nodes.heartbeat(rt, node, data)

    @post(
        "/request_task",
        status_code=200,
        responses={204: ResponseSpec(None, description="no task became ready within wait_s")},
    )
    async def request_task(
        self,
        request: Request,
        rt: Runtime,
        node: Node,
        wait_s: Annotated[float, Parameter(ge=0, le=60)] = 25.0,
    ) -> Response[TaskAssignment | None]:
        """Long-poll for a task: answers as soon as one is leased, or 204 after `wait_s`."""
        gone = asyncio.ensure_future(_hang_up(request))
        try:
            task = await dispatch.request_task(rt, node, wait_s, gone)
        finally:
            gone.cancel()
        if task is None:
            return Response(None, status_code=204)
        return Response(task)

    @post("/complete_task", status_code=200)
    async def complete_task(self, data: CompleteTaskRequest, rt: Runtime, node: Node) -> TaskAck:
        """Finish a task with uploaded weights; 409 if the lease is not held, 422 if refused.
        With `next`, the node's next ready task comes in the same answer."""
        ack = await results.complete_task(rt, node, data)
        if data.next:
            ack.next_task = await dispatch.next_task(rt, node)
        return ack

    @post("/fail_task", status_code=200)
    async def fail_task(self, data: FailTaskRequest, rt: Runtime, node: Node) -> TaskAck:
        """Give a task up (user-code failure, node failure, or release on shutdown)."""
        return await results.fail_task(rt, node, data)

    @post("/upload_link", status_code=200)
    async def upload_link(self, data: UploadLinkRequest, rt: Runtime, node: Node) -> UploadLink:
        """A fresh link to PUT a task's result to (a long task outlives the one it came with);
        409 if the lease is not held."""
        return await results.upload_link(rt, node, data)

    @put(
        "/results/{task_id:str}",
        request_max_body_size=None,
        status_code=201,
        responses={
            202: ResponseSpec(
                UploadResponse,
                description="A resumable upload's part is kept; `size` (and `Upload-Offset`) "
                "is what the coordinator holds so far",
                generate_examples=False,
            )
        },
    )
    async def upload_result(
        self,
        request: Request,
        rt: Runtime,
        task_id: str,
        exp: int,
        sig: str,
        lease: str,
    ) -> Response[UploadResponse]:
        """Upload a result file through the signed URL the task came with (raw bytes body).

        Resumable (local storage): send `Upload-Length` (the file's size) and `Upload-Offset`
        (where this body starts: 0, then what `HEAD` on the link says the coordinator holds);
        201 once the file is whole, 202 with `Upload-Offset` while it is not, 409
        `upload_offset` when the offset is not what the coordinator holds."""
        rt.signer.verify("PUT", f"{task_id}:{lease}", exp, sig, rt.clock.now_ms())
        retention.check_free_space(rt, int(request.headers.get("content-length") or 0))
        part = upload_part(request.headers)
        stored = await results.upload_result(rt, task_id, lease, request.stream(), part)
        if isinstance(stored, int):  # (size: what is held so far)
            held = UploadResponse(sha256="", size=stored)
            return Response(held, status_code=202, headers=offset_header(stored))
        return Response(stored, status_code=201)

    @head("/results/{task_id:str}", status_code=200)
    async def upload_offset(
        self, rt: Runtime, task_id: str, exp: int, sig: str, lease: str
    ) -> Response[None]:
        """How many bytes of a resumable upload the coordinator holds (`Upload-Offset`)."""
        rt.signer.verify("PUT", f"{task_id}:{lease}", exp, sig, rt.clock.now_ms())
        return Response(None, headers=offset_header(resumable.held(rt, task_id, lease)))
