"""What operations watch: the stack's log group, its operations topic and the alarms sent to it."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.settings import Settings

ALARM_PERIOD_SECONDS = 60


class Monitoring(pulumi.ComponentResource):
    log_group_name: pulumi.Output[str]
    topic_arn: pulumi.Output[str]
    alarm_names: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        settings: Settings,
        load_balancer_arn_suffix: pulumi.Input[str],
        target_group_arn_suffix: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("fleet:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = settings.tags()

        # A fixed, predictable name: instances' CloudWatch agent ships to it without a lookup.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/fleet/{settings.stack}/{settings.app_name}",
            retention_in_days=settings.log_retention_days,
            tags=tags,
            opts=child,
        )
        # No KMS key here: CloudWatch alarms cannot publish to a topic encrypted with the
        # AWS-managed SNS key, and the alarms are this topic's purpose.
        topic = aws.sns.Topic(f"{name}-ops", tags=tags, opts=child)
        if settings.ops_email:
            aws.sns.TopicSubscription(
                f"{name}-ops-email", topic=topic.arn, protocol="email", endpoint=settings.ops_email, opts=child
            )

        alarm_common = dict(
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            tags=tags,
            opts=child,
        )
        unhealthy = aws.cloudwatch.MetricAlarm(
            f"{name}-unhealthy-hosts",
            alarm_description=f"fleet {settings.stack}: targets failing the load balancer health check",
            namespace="AWS/ApplicationELB",
            metric_name="UnHealthyHostCount",
            dimensions={"LoadBalancer": load_balancer_arn_suffix, "TargetGroup": target_group_arn_suffix},
            statistic="Maximum",
            period=ALARM_PERIOD_SECONDS,
            evaluation_periods=2,
            threshold=1,
            **alarm_common,
        )
        # 5xx from the load balancer itself (no healthy target, timeouts) and from the application.
        http5xx = aws.cloudwatch.MetricAlarm(
            f"{name}-http5xx",
            alarm_description=(
                f"fleet {settings.stack}: at least {settings.http5xx_alarm_threshold} 5xx answers a minute"
            ),
            metric_queries=[
                _sum_query("elb", "HTTPCode_ELB_5XX_Count", {"LoadBalancer": load_balancer_arn_suffix}),
                _sum_query("target", "HTTPCode_Target_5XX_Count", {"LoadBalancer": load_balancer_arn_suffix}),
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="total", expression="FILL(elb, 0) + FILL(target, 0)", label="5xx answers", return_data=True
                ),
            ],
            evaluation_periods=1,
            threshold=settings.http5xx_alarm_threshold,
            **alarm_common,
        )

        self.log_group_name = log_group.name
        self.topic_arn = topic.arn
        self.alarm_names = {"unhealthyHosts": unhealthy.name, "http5xx": http5xx.name}
        self.register_outputs({"logGroupName": self.log_group_name, "opsTopicArn": self.topic_arn})


def _sum_query(query_id: str, metric: str, dimensions: dict) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace="AWS/ApplicationELB",
            metric_name=metric,
            dimensions=dimensions,
            stat="Sum",
            period=ALARM_PERIOD_SECONDS,
        ),
        return_data=False,
    )
