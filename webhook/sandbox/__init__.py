"""Local stand-in of Azure DevOps (REST API 7.1 + service hooks) for tests and `demo`.

from webhook.sandbox import Sandbox

with Sandbox() as sb:
    sb.org_url, sb.pat, sb.sp   # connect a client here
"""

from .server import Sandbox

__all__ = ["Sandbox"]
