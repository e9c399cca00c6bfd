//! One `umpire local` run: NATS, workers, feeders of the live view, and the orderly stop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_nats::connect::NatsSettings;
use umpire_runtime::readiness::Readiness;

use crate::LocalOptions;
use crate::adapt::{Environment, adapt};
use crate::demo::Demo;
use crate::nats_server::{NatsServerError, PrivateNats};
use crate::resources::{LoadError, LocalResources};
use crate::view::render::{OutputFormat, Renderer};
use crate::view::{Board, LocalEvent, PolicyStats, ProjectStats};
use crate::workers::{Workers, build_board, start_workers, subscribe_scores};

/// How long the workers may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    NatsServer(#[from] NatsServerError),
    #[error("NATS at {url}: {message}")]
    Nats { url: String, message: String },
    #[error("{what}: {message}")]
    Worker { what: String, message: String },
    #[error("preparing {path}: {source}")]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the demo: {0}")]
    Demo(String),
}

/// What a run did, for the caller's exit status and the demo's closing words.
#[derive(Debug, Clone)]
pub struct Summary {
    pub seconds: f64,
    pub projects: Vec<ProjectStats>,
    pub policies: Vec<PolicyStats>,
    /// `(rule, trigger or resolve, seconds)` for every notification handed to a route.
    pub notifications: Vec<(String, String, f64)>,
    /// The demo's manifests, to copy into a repository.
    pub demo_yaml: Option<String>,
    pub demo_completed: bool,
}

/// Runs until `shutdown` (or, for the demo, until its incident has paged and resolved).
pub async fn run(
    options: LocalOptions,
    shutdown: CancellationToken,
) -> Result<Summary, LocalError> {
    let mut renderer = Renderer::new(options.format);
    let temp = tempfile::Builder::new()
        .prefix("umpire-local-")
        .tempdir()
        .map_err(|source| LocalError::Files {
            path: std::env::temp_dir(),
            source,
        })?;
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    let files = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| LocalError::Files { path, source }
    };
    std::fs::create_dir_all(&data_dir).map_err(files(&data_dir))?;

    let demo = if options.demo {
        Some(Demo::prepare().await.map_err(LocalError::Demo)?)
    } else {
        None
    };
    let resources = match &demo {
        Some(demo) => LocalResources::from_yaml(&demo.runnable_yaml)?,
        None => LocalResources::load(&options.paths)?,
    };

    let (private, nats) = match &options.nats {
        Some(settings) => (None, settings.clone()),
        None => {
            let server = PrivateNats::start(&data_dir).await?;
            let settings = NatsSettings::plain(server.url.clone());
            (Some(server), settings)
        }
    };
    let client = connect(&nats).await?;
    let single_node = client.server_info().cluster.is_none();

    let adapted = adapt(
        resources,
        Environment {
            single_node,
            print_alerts: options.print_alerts,
        },
    );
    // Said before anything runs: a worker that then fails to start is explained by them.
    renderer.events(
        &adapted
            .adaptations
            .iter()
            .cloned()
            .map(LocalEvent::Adapted)
            .collect::<Vec<_>>(),
    );
    let mounts = data_dir.join("objects");
    adapted
        .resources
        .materialise(&mounts)
        .map_err(files(&mounts))?;

    let workers_stop = CancellationToken::new();
    let board_cell: Arc<std::sync::OnceLock<Board>> = Arc::default();
    let workers = start_workers(
        &options,
        &adapted,
        &nats,
        &mounts,
        &board_cell,
        &workers_stop,
    )
    .await;
    let workers = match workers {
        Ok(workers) => workers,
        Err(e) => {
            workers_stop.cancel();
            if let Some(server) = private {
                server.stop().await;
            }
            return Err(e);
        }
    };
    let board = build_board(&workers, &adapted);
    let _ = board_cell.set(board.clone());
    let feeders = subscribe_scores(&client, &adapted, &board).await?;
    wait_ready(&workers, &shutdown).await?;
    board.record_event(LocalEvent::Started {
        nats: nats.url.clone(),
        projects: board.projects(),
        policies: workers.evaluators.iter().map(|(n, _)| n.clone()).collect(),
    });
    renderer.set_header(vec![format!("NATS {}", nats.url)]);

    let demo_task: Option<JoinHandle<bool>> = demo.as_ref().map(|demo| {
        let project = &board.projects()[0];
        demo.start(project, board.clone(), shutdown.clone())
    });

    let started = Instant::now();
    let mut ticks = 0u64;
    let mut interval = tokio::time::interval(options.refresh);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut notifications = Vec::new();
    let mut demo_completed = false;
    loop {
        let finished_demo = demo_task.as_ref().is_some_and(JoinHandle::is_finished);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        board.refresh();
        let events = board.take_events();
        for event in &events {
            if let LocalEvent::Notification(n) = event
                && !n.outcome.starts_with("retrying")
            {
                let action = format!("{:?}", n.action).to_lowercase();
                notifications.push((n.rule.clone(), action, n.at_seconds));
            }
        }
        renderer.events(&events);
        ticks += 1;
        if options.format == OutputFormat::Table || ticks.is_multiple_of(5) {
            renderer.figures(&board);
        }
        if finished_demo {
            if let Some(task) = demo_task {
                demo_completed = task.await.unwrap_or(false);
            }
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    workers_stop.cancel();
    for (_, ingest) in workers.ingests {
        ingest.wait().await;
    }
    for (_, evaluator) in workers.evaluators {
        evaluator.wait().await;
    }
    for feeder in feeders {
        feeder.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    drop(client);
    if let Some(server) = private {
        server.stop().await;
    }
    board.refresh();
    renderer.events(&board.take_events());
    Ok(Summary {
        seconds,
        projects: board.projects(),
        policies: board.policies(),
        notifications,
        demo_yaml: demo.map(|d| d.published_yaml),
        demo_completed,
    })
}

async fn connect(settings: &NatsSettings) -> Result<async_nats::Client, LocalError> {
    let readiness = Readiness::default();
    let error = |message: String| LocalError::Nats {
        url: settings.url.clone(),
        message,
    };
    let client = umpire_nats::connect::connect(settings, "umpire-local", &readiness, "nats")
        .await
        .map_err(|e| error(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !umpire_nats::connect::is_connected(&client) {
        if Instant::now() > deadline {
            return Err(error("not reachable within 20s".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A server that has just started may accept clients before JetStream is up: ask until
    // JetStream answers, within the same deadline.
    let js = async_nats::jetstream::new(client.clone());
    while js.query_account().await.is_err() {
        if Instant::now() > deadline {
            return Err(error(
                "JetStream is not enabled (start nats-server with -js)".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(client)
}

async fn wait_ready(workers: &Workers, shutdown: &CancellationToken) -> Result<(), LocalError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let checks = workers
        .ingests
        .iter()
        .map(|(name, w)| (format!("ingest {name}"), &w.readiness))
        .chain(
            workers
                .evaluators
                .iter()
                .map(|(name, w)| (format!("evaluator {name}"), &w.readiness)),
        );
    for (what, readiness) in checks {
        loop {
            match readiness.status() {
                Ok(()) => break,
                Err(reason) if Instant::now() > deadline => {
                    return Err(LocalError::Worker {
                        what,
                        message: format!("not ready after {READY_TIMEOUT:?}: {reason}"),
                    });
                }
                Err(_) if shutdown.is_cancelled() => return Ok(()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(())
}
