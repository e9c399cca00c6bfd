#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors
use async_nats::jetstream;
use futures::StreamExt;
use umpire_testkit::nats::NatsServer;

#[tokio::test]
async fn publishes_to_and_reads_from_a_jetstream_stream() {
    let server = NatsServer::start().expect("nats-server starts");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "TESTKIT".into(),
            subjects: vec!["testkit.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..3 {
        let ack = js
            .publish(format!("testkit.{i}"), format!("span-{i}").into())
            .await
            .unwrap();
        assert_eq!(ack.await.unwrap().sequence, i + 1);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("reader".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(3).messages().await.unwrap();
    let mut received = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        received.push(String::from_utf8(message.payload.to_vec()).unwrap());
        message.ack().await.unwrap();
    }
    assert_eq!(received, ["span-0", "span-1", "span-2"]);
}

#[tokio::test]
async fn keeps_jetstream_data_across_a_crash_and_restart() {
    let mut server = NatsServer::start().unwrap();
    let port = server.port();
    {
        let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
        js.create_stream(jetstream::stream::Config {
            name: "DURABLE".into(),
            subjects: vec!["durable".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("durable", "kept".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    server.kill();
    assert!(!server.is_running());
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let mut stream = js.get_stream("DURABLE").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}
