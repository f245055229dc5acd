"""Generated-client check for .ci/api-fuzz.sh (run when API_CLIENT_CHECK=1):
a Python client generated from /openapi.json by openapi-python-client,
used without edits, publishes, receives, acks, submits a request and
completes it as a worker.

    python3 .ci/api_client_check.py URL GENERATED_PACKAGE_DIR
"""

import importlib
import sys
import uuid


def main(url, package_dir):
    sys.path.insert(0, package_dir)
    pkg = "spool_http_api_client"
    client_mod = importlib.import_module(pkg)
    api = lambda tag, op: importlib.import_module(f"{pkg}.api.{tag}.{op}")
    models = importlib.import_module(f"{pkg}.models")
    # The server may run without authentication; then any token is accepted.
    client = client_mod.AuthenticatedClient(
        base_url=url, token="unused", raise_on_unexpected_status=True
    )

    topic = "client-check-" + uuid.uuid4().hex[:8]
    r = api("topics", "create_topic").sync_detailed(
        client=client, body=models.CreateTopic(name=topic, partitions=2)
    )
    assert r.status_code == 201, r
    r = api("subscriptions", "create_subscription").sync_detailed(
        topic=topic, client=client, body=models.CreateSubscription(name="workers")
    )
    assert r.status_code == 201, r

    message = models.Message(value="hello", key="k1", message_id="m-1")
    published = api("messages", "publish").sync(
        topic=topic, client=client, body=models.Publish(messages=[message])
    )
    assert len(published.offsets) == 1, published

    received = api("subscriptions", "receive").sync(
        topic=topic, sub="workers", client=client, body=models.Receive(max_=10, wait_ms=2000)
    )
    assert [m.value for m in received.messages] == ["hello"], received
    receipt = received.messages[0].receipt
    acked = api("subscriptions", "ack").sync(
        topic=topic, sub="workers", client=client, body=models.Ack(receipts=[receipt])
    )
    assert acked.results[0].ok, acked

    fetched = api("messages", "fetch_messages").sync(
        topic=topic, client=client, partition=published.offsets[0].partition, offset=0
    )
    assert fetched.messages[0].value == "hello", fetched

    payload = {"n": 1}
    submitted = api("requests", "submit_request").sync(
        client=client, body=models.SubmitRequest(queue=topic + "-jobs", payload=payload)
    )
    # A worker leases the request's message from the queue's `workers`
    # subscription and completes the request it names.
    job = api("subscriptions", "receive").sync(
        topic=topic + "-jobs", sub="workers", client=client,
        body=models.Receive(max_=1, wait_ms=2000),
    ).messages[0]
    assert job.headers.additional_properties["spool-request-id"] == submitted.id, job
    api("requests", "complete_request").sync(
        id=submitted.id, client=client, body=models.CompleteRequest(result={"ok": True})
    )
    record = api("requests", "get_request").sync(id=submitted.id, client=client, wait_ms=2000)
    assert record.status == models.RequestStatusView.SUCCEEDED, record
    assert record.result == {"ok": True}, record
    print("generated client: create topic, subscribe, publish, receive, ack, fetch, "
          "submit a request, complete it as a worker, read its result: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
