"""The internet-facing Application Load Balancer, its security group, listeners and target group.

Plain pulumi_aws on purpose: awsx's ApplicationLoadBalancer defaults to IP targets and an open
security group. Names are left to autonaming so a replacement never collides with the old one.
"""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.security_rules import allow_tcp
from infra.settings import Settings

# TLS 1.3 and 1.2 only, AWS's recommended policy for internet-facing HTTPS listeners.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
HTTP_PORT = 80
HTTPS_PORT = 443


class LoadBalancer(pulumi.ComponentResource):
    arn: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]
    dns_name: pulumi.Output[str]
    url: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: Settings,
        vpc_id: pulumi.Input[str],
        public_subnet_ids: pulumi.Input[list[str]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("fleet:loadBalancer:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = settings.tags()

        # Open to the internet on the listener ports only; egress to the instances is added
        # with the instances' security group (infra/instance_access.py).
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="fleet load balancer: HTTP and HTTPS from the internet",
            vpc_id=vpc_id,
            tags=tags,
            opts=child,
        )
        listener_ports = (HTTP_PORT, HTTPS_PORT) if settings.https else (HTTP_PORT,)
        for port in listener_ports:
            allow_tcp(
                f"{name}-sg-in-{port}",
                direction="ingress",
                security_group_id=security_group.id,
                port=port,
                description=f"port {port} from the internet",
                tags=tags,
                opts=child,
            )

        balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=public_subnet_ids,
            security_groups=[security_group.id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=settings.protect_foundation,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=settings.protect_foundation),
        )

        target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            vpc_id=vpc_id,
            target_type="instance",
            protocol="HTTP",
            port=settings.app_port,
            deregistration_delay=settings.deregistration_delay_seconds,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                protocol="HTTP",
                port="traffic-port",
                path=settings.health_check_path,
                matcher="200-399",
                interval=settings.health_check_interval_seconds,
                timeout=settings.health_check_timeout_seconds,
                healthy_threshold=settings.healthy_threshold,
                unhealthy_threshold=settings.unhealthy_threshold,
            ),
            tags=tags,
            opts=child,
        )

        forward = aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)
        if settings.https:
            aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=balancer.arn,
                port=HTTPS_PORT,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=settings.certificate_arn,
                default_actions=[forward],
                tags=tags,
                opts=child,
            )
            http_action = aws.lb.ListenerDefaultActionArgs(
                type="redirect",
                redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                    port=str(HTTPS_PORT), protocol="HTTPS", status_code="HTTP_301"
                ),
            )
        else:
            http_action = forward
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=balancer.arn,
            port=HTTP_PORT,
            protocol="HTTP",
            default_actions=[http_action],
            tags=tags,
            opts=child,
        )

        scheme = "https" if settings.https else "http"
        self.arn = balancer.arn
        self.arn_suffix = balancer.arn_suffix
        self.dns_name = balancer.dns_name
        self.url = balancer.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.security_group_id = security_group.id
        self.target_group_arn = target_group.arn
        self.target_group_arn_suffix = target_group.arn_suffix
        self.register_outputs({"url": self.url, "targetGroupArn": self.target_group_arn})
