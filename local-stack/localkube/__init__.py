"""Local Kubernetes stack: fake GPU nodes whose pods are local processes on loopback."""
