"use client";

import { useRouter } from "next/navigation";
import { useState } from "react";

import { ErrorNote } from "@/components/Shell";
import { ApiError, getJson, setKey } from "@/lib/api";
import type { UserInfo } from "@/lib/types";

export default function SignIn() {
  const router = useRouter();
  const [key, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  return (
    <>
      <h1>Sign in</h1>
      <p className="muted">
        Paste your API key (an admin creates it with <code>gridx user create you@example.org</code>).
        It stays in this browser only.
      </p>
      <form
        className="grid"
        onSubmit={async (e) => {
          e.preventDefault();
          setKey(key.trim());
          try {
            const me = await getJson<UserInfo>("/me");
            router.replace("/");
            setError(null);
            console.info(`signed in as ${me.email}`);
          } catch (err) {
            setKey(null);
            setError(err instanceof ApiError ? err.body.message : "cannot reach the coordinator");
          }
        }}
      >
        <label>
          API key
          <input
            name="api_key"
            type="password"
            autoComplete="off"
            required
            value={key}
            onChange={(e) => setValue(e.target.value)}
          />
        </label>
        <div className="actions">
          <button type="submit">Sign in</button>
        </div>
      </form>
      <ErrorNote error={error} />
    </>
  );
}
