"""The operator console in tests: users made the way a site makes them (`csms users add`), sign-in over
HTTP or in Debian's chromium, and where screenshots go."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
PASSWORD = "correct horse battery"


def add_user(db_url: str, name: str, role: str, password: str = PASSWORD) -> None:
    """`csms users add NAME --role ROLE --password-stdin --db URL`, as the README says."""
    done = subprocess.run(
        [sys.executable, "-m", "csms", "users", "add", name, "--role", role, "--password-stdin", "--db", db_url],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


async def http_sign_in(http: str, name: str, password: str = PASSWORD) -> httpx.AsyncClient:
    """An HTTP client signed in as `name` (the caller closes it)."""
    client = httpx.AsyncClient(base_url=http, timeout=30, headers={"Origin": http})
    page = await client.get("/ui/login")
    res = await client.post(
        "/ui/login", data={"csrf": csrf_of(page.text), "next": "/ui/", "user": name, "password": password}
    )
    assert res.status_code == 303 and res.headers["location"] == "/ui/", res.text
    return client


def browser_sign_in(page, http: str, name: str, password: str = PASSWORD, next_path: str = "/ui/") -> None:
    """Sign in through the form, as a person does."""
    from playwright.sync_api import expect

    page.goto(f"{http}/ui/login?next={next_path}")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{http}{next_path}")


def launch(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


AXE_DIR = Path(__file__).with_name("axe")


def axe_source() -> str | None:
    """axe-core's script (npm, installed into tests/support/axe on first use), or None without node and npm."""
    import fcntl
    import shutil

    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if shutil.which("npm") is None:
        return None
    with open(AXE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel workers install once
        if not script.exists():
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"], cwd=AXE_DIR, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"npm ci in {AXE_DIR} failed:\n{done.stdout}\n{done.stderr}"
    return script.read_text(encoding="utf-8")


def axe_problems(page, source: str) -> list[str]:
    """Serious and critical axe-core findings on the page as it is now, one line each."""
    page.evaluate(source)
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.impact + ' ' + v.id + ': ' + v.help + ' -> ' +"
        " v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))"
    )
    return list(found)
