"""hub/proxy.py: the proxy as its own process, its settings, and TLS with a certificate made here by
openssl (the proxy serves exactly that certificate over https, and nothing over plain http)."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hub import proxy
from hub.local import free_port

ROOT = Path(__file__).resolve().parents[2]
CHP_PATH = f"{ROOT / '.venv' / 'node' / 'bin'}:{os.environ.get('PATH', '')}"


def test_settings_and_the_command_line(tmp_path):
    s = proxy.settings({"CONVLAB_HUB_IP": "0.0.0.0", "CONVLAB_HUB_PORT": "443", "CONVLAB_HUB_STATE": str(tmp_path)})
    assert s.public_url == "http://0.0.0.0:443" and s.hub_url == "http://127.0.0.1:8081"
    assert "--ssl-cert" not in proxy.command(s, "chp")
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    tls = proxy.settings({"CONVLAB_SSL_CERT": str(tmp_path / "c.pem"), "CONVLAB_SSL_KEY": str(tmp_path / "k.pem")})
    assert tls.public_url.startswith("https://")
    cmd = proxy.command(tls, "chp")
    assert cmd[cmd.index("--ssl-cert") + 1] == str(tmp_path / "c.pem")
    assert cmd[cmd.index("--ssl-key") + 1] == str(tmp_path / "k.pem")
    assert cmd[cmd.index("--api-ip") + 1] == "127.0.0.1"                      # the API stays private
    with pytest.raises(SystemExit, match="both CONVLAB_SSL_CERT and CONVLAB_SSL_KEY"):
        proxy.settings({"CONVLAB_SSL_CERT": str(tmp_path / "c.pem")})
    with pytest.raises(SystemExit, match="no such file"):
        proxy.settings({"CONVLAB_SSL_CERT": str(tmp_path / "nope.pem"), "CONVLAB_SSL_KEY": str(tmp_path / "k.pem")})


def test_the_token_is_made_once_and_private(tmp_path):
    token = proxy.secret(tmp_path / "t")
    assert len(token) == 64 and proxy.secret(tmp_path / "t") == token
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o600


def test_the_proxy_serves_a_self_signed_certificate_over_https(tmp_path):
    if not shutil.which("configurable-http-proxy", path=CHP_PATH):
        pytest.skip("configurable-http-proxy is not installed: `make hub-deps` (as root) installs it")
    assert shutil.which("openssl"), "openssl is missing"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    env = dict(os.environ, PATH=CHP_PATH, CONVLAB_HUB_STATE=str(tmp_path / "state"), CONVLAB_HUB_PORT=str(port),
               CONVLAB_PROXY_API_PORT=str(free_port()), CONVLAB_HUB_INTERNAL_PORT=str(free_port()),
               CONVLAB_SSL_CERT=str(cert), CONVLAB_SSL_KEY=str(key))
    proc = subprocess.Popen([sys.executable, str(ROOT / "hub" / "proxy.py")], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    served = tls.getpeercert(binary_form=True)
                break
            except (ConnectionRefusedError, ssl.SSLEOFError):
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.1)
        assert served == ssl.PEM_cert_to_DER_cert(cert.read_text())       # verified against our own CA
        with pytest.raises(urllib.error.HTTPError) as err:                  # https answers (no hub behind it)
            urllib.request.urlopen(f"https://127.0.0.1:{port}/hub/", context=context, timeout=10)
        assert err.value.code in (502, 503)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):   # not trusted: refused
            urllib.request.urlopen(f"https://127.0.0.1:{port}/hub/", timeout=10)
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)) as plain:   # no plain http
            urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/", timeout=10).read()
        assert not isinstance(plain.value, urllib.error.HTTPError)
        assert (tmp_path / "state" / "proxy-token").stat().st_mode & 0o777 == 0o600
    finally:
        proc.kill()
        proc.wait(timeout=10)
