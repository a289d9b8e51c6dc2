"""fleet's release CLI: orchestration on the Pulumi Automation API and boto3."""

__version__ = "0.1.0"
