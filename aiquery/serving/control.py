"""A small synchronous client for the emulator's admin routes (tests, benchmarks, notebooks)."""

from __future__ import annotations

from typing import Any

import httpx


class EmulatorControl:
    """Change an emulator's knobs and read what it received, over its loopback admin routes."""

    def __init__(self, url: str, admin_token: str) -> None:
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        )

    def __repr__(self) -> str:
        return f"EmulatorControl({str(self._http.base_url)!r}, admin_token=***)"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(
                f"emulator admin {method} {path}: {response.status_code} {response.text}"
            )
        return response.json()

    def set_faults(self, endpoint: str | None = None, **changes: Any) -> None:
        """Change knobs of one endpoint, or of every endpoint when `endpoint` is None."""
        path = f"/admin/endpoints/{endpoint}/faults" if endpoint else "/admin/faults"
        self._call("PATCH", path, json=changes)

    def put_endpoint(self, name: str, **spec: Any) -> None:
        self._call("PUT", f"/admin/endpoints/{name}", json=spec)

    def delete_endpoint(self, name: str) -> None:
        self._call("DELETE", f"/admin/endpoints/{name}")

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        params = {"endpoint": endpoint} if endpoint else {}
        rows: list[dict[str, Any]] = self._call("GET", "/admin/requests", params=params)["requests"]
        return rows

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", "/admin/stats")["endpoints"]
        return stats

    def reset(self) -> None:
        self._call("POST", "/admin/reset")

    def close(self) -> None:
        self._http.close()
