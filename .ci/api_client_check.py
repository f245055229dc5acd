"""Generated-client check for .ci/api-fuzz.sh (run when API_CLIENT_CHECK=1):
a Python client generated from /openapi.json by openapi-python-client,
used without edits, publishes, receives, acks and submits a request.

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
    client = client_mod.Client(base_url=url, raise_on_unexpected_status=True)

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

    payload = models.SubmitRequestPayloadType0.from_dict({"n": 1}) if hasattr(
        models, "SubmitRequestPayloadType0") else {"n": 1}
    submitted = api("requests", "submit_request").sync(
        client=client, body=models.SubmitRequest(queue=topic + "-jobs", payload=payload)
    )
    record = api("requests", "get_request").sync(id=submitted.id, client=client)
    assert record.id == submitted.id and record.queue == topic + "-jobs", record
    print("generated client: create topic, subscribe, publish, receive, ack, fetch, "
          "submit and read a request: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
