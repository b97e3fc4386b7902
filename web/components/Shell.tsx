"use client";

import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { useEffect, useState, type ReactNode } from "react";

import { getJson, getKey, setKey } from "@/lib/api";
import type { UserInfo } from "@/lib/types";

const LINKS = [
  ["/", "Overview"],
  ["/job-list/", "Jobs"],
  ["/submit/", "Submit"],
  ["/fleet/", "Nodes"],
  ["/contributors/", "Contributors"],
] as const;

/** Navigation, and a guard: pages other than sign-in need an API key in this browser. */
export function Shell({ children }: { children: ReactNode }) {
  const path = usePathname();
  const router = useRouter();
  const [key, setLocalKey] = useState<string | null | undefined>(undefined);
  useEffect(() => setLocalKey(getKey()), [path]);
  const signingIn = path.startsWith("/signin");
  const [me, setMe] = useState<UserInfo | null>(null);
  useEffect(() => {
    if (key)
      getJson<UserInfo>("/me")
        .then(setMe)
        .catch(() => setMe(null));
  }, [key]);
  useEffect(() => {
    // read storage, not state: right after sign-in the state still holds the old value
    if (!getKey() && !signingIn) router.replace("/signin/");
  }, [key, signingIn, router]);
  return (
    <>
      <header className="top">
        <Link href="/" className="brand">
          Grid-X
        </Link>
        {key && (
          <nav aria-label="Main">
            {LINKS.map(([href, label]) => (
              <Link key={href} href={href} aria-current={path === href ? "page" : undefined}>
                {label}
              </Link>
            ))}
            {me && (
              <span className="who" data-testid="signed-in" title={`signed in as ${me.role}`}>
                {me.email}
              </span>
            )}
            <button
              type="button"
              className="link"
              onClick={() => {
                setKey(null);
                setLocalKey(null);
                setMe(null);
                router.replace("/signin/");
              }}
            >
              Sign out
            </button>
          </nav>
        )}
      </header>
      <main>{key || signingIn ? children : null}</main>
    </>
  );
}

export function Status({ value }: { value: string }) {
  return <span className={`badge ${value}`}>{value}</span>;
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function ErrorNote({ error }: { error: string | null }) {
  return error ? (
    <p className="error" role="alert">
      {error}
    </p>
  ) : null;
}
