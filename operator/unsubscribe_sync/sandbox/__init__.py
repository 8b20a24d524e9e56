"""A Salesforce-compatible server for tests, benchmarks and the demo.

It imports nothing else of this project: it stands in for Salesforce, so it can catch the client's mistakes.

    from unsubscribe_sync.sandbox import SandboxServer, SandboxState
    with SandboxServer(tls_dir) as server:          # https://127.0.0.1:PORT, login URL and instance URL
        contact = server.state.add_record("Contact", "ada@example.com")
        server.credentials.write(creds_dir)         # client_id + client_secret files
"""

from .admin_client import SandboxAdmin
from .credentials import SandboxCredentials, generate_credentials
from .server import SandboxServer
from .state import SandboxState

__all__ = ["SandboxAdmin", "SandboxCredentials", "SandboxServer", "SandboxState", "generate_credentials"]
