"""The hub's proxy, started on its own so that restarting the hub stops nobody's server.

JupyterHub can start configurable-http-proxy itself, but then a restarted hub kills the proxy it
finds from its pid file, and every user's connection with it. So, as JupyterHub's docs describe for
an external proxy, the proxy runs as its own service (`convlab-proxy`, e.g. a systemd unit started
before the hub) and the hub only talks to its API (`ConfigurableHTTPProxy.should_start = False`,
hub/jupyterhub_config.py), with `cleanup_servers = False`: stopping or restarting the hub leaves the
proxy and every user's server running, and the hub finds them again when it starts.

Both read the same settings from the environment (the defaults in brackets):

    CONVLAB_HUB_IP, CONVLAB_HUB_PORT      where people connect (127.0.0.1, 8000)
    CONVLAB_HUB_INTERNAL_PORT             the hub's own port, on localhost (8081)
    CONVLAB_PROXY_API_PORT                the proxy's API, on localhost (8001)
    CONVLAB_HUB_STATE                     the hub's state folder (/srv/jupyterhub): proxy-token lives
                                          there, root's alone, made by whichever starts first
    CONVLAB_SSL_CERT, CONVLAB_SSL_KEY     TLS: PEM files of the certificate (with its chain) and key;
                                          with them the proxy serves https only

    /opt/convlab/python/bin/python /opt/convlab/staff/hub/proxy.py      # as root, before the hub
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    ip: str
    port: int
    hub_port: int
    api_port: int
    state: Path
    cert: Path | None
    key: Path | None

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    @property
    def public_url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"


def settings(env=None) -> Settings:
    env = os.environ if env is None else env
    cert, key = env.get("CONVLAB_SSL_CERT") or None, env.get("CONVLAB_SSL_KEY") or None
    if bool(cert) != bool(key):
        raise SystemExit("error: set both CONVLAB_SSL_CERT and CONVLAB_SSL_KEY (PEM files), or neither")
    for what, path in (("CONVLAB_SSL_CERT", cert), ("CONVLAB_SSL_KEY", key)):
        if path and not Path(path).is_file():
            raise SystemExit(f"error: {what}={path}: no such file")
    return Settings(ip=env.get("CONVLAB_HUB_IP", "127.0.0.1"), port=int(env.get("CONVLAB_HUB_PORT", "8000")),
                    hub_port=int(env.get("CONVLAB_HUB_INTERNAL_PORT", "8081")),
                    api_port=int(env.get("CONVLAB_PROXY_API_PORT", "8001")),
                    state=Path(env.get("CONVLAB_HUB_STATE", "/srv/jupyterhub")),
                    cert=Path(cert) if cert else None, key=Path(key) if key else None)


def secret(path: Path) -> str:
    """A token kept in `path` (made, 0600, if missing): the same across restarts."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        token = secrets.token_hex(32)
        f.write(token)
    return token


def command(s: Settings, chp: str) -> list[str]:
    cmd = [chp, "--ip", s.ip, "--port", str(s.port), "--api-ip", "127.0.0.1", "--api-port", str(s.api_port),
           "--default-target", s.hub_url, "--error-target", f"{s.hub_url}/hub/error"]
    if s.cert:
        cmd += ["--ssl-cert", str(s.cert), "--ssl-key", str(s.key)]
    return cmd


def find_chp() -> str:
    here = Path(__file__).resolve().parent.parent.parent        # RUNTIME (staff/hub/proxy.py)
    chp = shutil.which("configurable-http-proxy", path=f"{here / 'node' / 'bin'}:{os.environ.get('PATH', '')}")
    if not chp:
        raise SystemExit("error: configurable-http-proxy not found: run `make hub-deps`")
    return chp


def main() -> None:
    s = settings()
    s.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=secret(s.state / "proxy-token"))
    cmd = command(s, find_chp())
    print("convlab-proxy:", " ".join(cmd), file=sys.stderr, flush=True)
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
