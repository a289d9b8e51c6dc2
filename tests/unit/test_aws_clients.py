"""boto3 clients: one session per environment, so a changed endpoint is never served stale."""
from automation import aws


def test_clients_follow_the_environment(monkeypatch):
    """A client made after AWS_ENDPOINT_URL changed talks to the new endpoint."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    first = aws.client("ssm")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")
    second = aws.client("ssm")
    assert (first.meta.endpoint_url, second.meta.endpoint_url) == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert aws.client("ssm", "eu-west-1").meta.region_name == "eu-west-1"
