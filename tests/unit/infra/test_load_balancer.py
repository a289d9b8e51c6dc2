"""The load balancer: listeners with and without a certificate, and the tuned target group."""
from __future__ import annotations

from tests.unit.infra.program_harness import run_program

LISTENER = "aws:lb/listener:Listener"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-90ab-cdef-1234-567890abcdef"


def test_plain_http_forwards_to_the_target_group():
    """Without a certificate: one HTTP listener forwarding to the target group, and only port 80 open."""
    run = run_program("integration")
    [listener] = run.of_type(LISTENER)
    assert listener.inputs["port"] == 80 and listener.inputs["protocol"] == "HTTP"
    assert listener.inputs["defaultActions"] == [
        {"type": "forward", "targetGroupArn": run.outputs["targetGroupArn"]}
    ]
    assert [r.inputs["fromPort"] for r in run.of_type(INGRESS) if "cidrIpv4" in r.inputs] == [80]
    assert run.outputs["url"].startswith("http://")


def test_certificate_turns_on_https_with_tls13_and_redirects_http():
    """With a certificate: HTTPS on 443 with a TLS 1.3 policy, and HTTP answers a permanent redirect to it."""
    run = run_program("staging", overrides={"fleet:certificateArn": CERTIFICATE})
    listeners = {r.inputs["port"]: r.inputs for r in run.of_type(LISTENER)}
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["protocol"] == "HTTPS"
    assert https["certificateArn"] == CERTIFICATE
    assert https["sslPolicy"].startswith("ELBSecurityPolicy-TLS13-")
    assert https["defaultActions"][0]["targetGroupArn"] == run.outputs["targetGroupArn"]
    [redirect] = listeners[80]["defaultActions"]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}
    assert sorted(r.inputs["fromPort"] for r in run.of_type(INGRESS) if "cidrIpv4" in r.inputs) == [80, 443]
    assert run.outputs["url"].startswith("https://")


def test_internet_facing_and_drops_invalid_headers():
    """An internet-facing application load balancer that drops requests' invalid header fields."""
    alb = run_program("production").one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert alb["internal"] is False
    assert alb["loadBalancerType"] == "application"
    assert alb["dropInvalidHeaderFields"] is True


def test_new_instance_healthy_within_about_15_seconds():
    """Defaults make a target healthy ~10-15 s after its app answers, with a 30 s drain, on the app port."""
    run = run_program("integration")
    group = run.one("aws:lb/targetGroup:TargetGroup").inputs
    check = group["healthCheck"]
    assert check["path"] == "/healthz"  # what examples/app serves
    # the first check lands within one interval, then healthyThreshold passes in a row
    assert check["interval"] * check["healthyThreshold"] + check["interval"] <= 15
    assert check["timeout"] < check["interval"]
    assert group["deregistrationDelay"] == 30
    assert group["targetType"] == "instance"
    assert group["port"] == 8080


def test_health_check_and_drain_follow_settings():
    """Path, app port, thresholds and deregistration delay come from the stack's settings."""
    run = run_program(
        "staging",
        overrides={"fleet:healthCheckPath": "/ready", "fleet:appPort": 9000, "fleet:deregistrationDelaySeconds": 5,
                   "fleet:healthyThreshold": 3},
    )
    group = run.one("aws:lb/targetGroup:TargetGroup").inputs
    assert (group["healthCheck"]["path"], group["port"], group["deregistrationDelay"]) == ("/ready", 9000, 5)
    assert group["healthCheck"]["healthyThreshold"] == 3
    app_rule = run.one(INGRESS, "app-from-alb").inputs
    assert (app_rule["fromPort"], app_rule["toPort"]) == (9000, 9000)
