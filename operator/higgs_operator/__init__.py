"""kopf operator for HiggsDeployment resources."""
