"""What a task's output would tell its job's owner about the volunteer: a traceback names the
node's folders (`/home/alice/gridx-worker/state/tasks/...`, the interpreter's site-packages).
Before output leaves this machine, the node's state folder and its user's home are shown as
`<node>` and `~`."""

from __future__ import annotations

from pathlib import Path


class OwnPaths:
    """The node's own folders, longest first, and how output shows them."""

    def __init__(self, state_dir: Path) -> None:
        pairs = {str(state_dir.resolve()): "<node>", str(state_dir): "<node>"}
        home = str(Path.home())
        if home not in ("/", ""):
            pairs[home] = "~"
        # never longer than what it hides: output keeps within the sizes the API accepts
        kept = [(path, shown) for path, shown in pairs.items() if len(path) >= len(shown)]
        self.pairs = sorted(kept, key=lambda kv: len(kv[0]), reverse=True)

    def hide(self, text: str) -> str:
        """`text` with the node's folders replaced."""
        for path, shown in self.pairs:
            text = text.replace(path, shown)
        return text
