"""The module kopf loads: ``kopf run -m operators.main --all-namespaces`` (interface 7).

Importing it registers every handler; ``python -m operators`` does the same with the deployment's
defaults (liveness endpoint, standalone, all namespaces unless told otherwise).
"""

from operators import handlers  # noqa: F401  (registers the handlers with kopf)
