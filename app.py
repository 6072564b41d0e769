"""ami-distributor's Lambda functions. Routing only: the work is in chalicelib."""
import os

from chalice import Chalice

from chalicelib import handlers

app = Chalice(app_name="ami-distributor", configure_logs=False)  # Powertools' Logger does the logging

MGN_AND_OPERATOR_EVENTS = {
    "source": ["aws.mgn", "ami-distributor"],
    "detail-type": ["MGN Source Server Launch Result", "Distribute Instances"],
}
# only the states a job waits for: "deregistered" (our own cleanup) would wake nothing
AMI_EVENTS = {"source": ["aws.ec2"], "detail-type": ["EC2 AMI State Change"], "detail": {"State": ["available", "failed"]}}


@app.on_cw_event(MGN_AND_OPERATOR_EVENTS)
def on_mgn_event(event):
    return handlers.on_mgn_event(event.to_dict(), event.context.aws_request_id if event.context else "")


@app.on_sqs_message(
    # Chalice imports app.py with the stage's environment set, so each stage binds its own queue.
    queue_arn=os.environ.get("JOBS_QUEUE_ARN", "arn:aws:sqs:us-east-1:111111111111:ami-distributor-jobs"),
    batch_size=10,
    # a second's wait lets the polls that fall due together (domain/polling.py's grid) share one invocation
    maximum_batching_window_in_seconds=int(os.environ.get("CONSUMER_BATCH_WINDOW_SECONDS", "1")),
    maximum_concurrency=int(os.environ.get("CONSUMER_MAX_CONCURRENCY", "20")),
)
def advance_jobs(event):
    return handlers.advance_jobs(event.to_dict(), event.context)


@app.on_cw_event(AMI_EVENTS)
def on_ami_event(event):
    return handlers.on_ami_event(event.to_dict(), event.context.aws_request_id if event.context else "")
