"""Names shared by the CRD, the handlers and the chart: one place so they cannot drift apart."""

GROUP = "audio.higgs.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "HiggsDeployment"
PLURAL = "higgsdeployments"

FIELD_MANAGER = "higgs-operator"
# Keeps a Deployment's replicas while they pass from the operator's apply to an autoscaler (render.py).
HANDOVER_MANAGER = f"{FIELD_MANAGER}-handover"

# Label put on every child so the operator can find (and prune) what it applied for one resource.
OWNER_LABEL = f"{GROUP}/owner"
# Annotation on children: hash of the object as rendered, to spot what changed between reconciles.
RENDER_HASH_ANNOTATION = f"{GROUP}/render-hash"
# Label on Secrets copied from the operator's namespace (spec.hfToken.mirrorFrom).
MIRROR_LABEL = f"{GROUP}/mirrored-from"

DEFAULT_TOKEN_KEY = "hf_access_token"
