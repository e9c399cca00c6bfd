//! One `umpire local` run: NATS, workers, feeders of the live view, and the orderly stop.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_alerting::delivery::report::{DeliveryObserver, PrintedRoutes};
use umpire_core::score::SpanEvaluation;
use umpire_evaluator::config::EvaluatorConfig;
use umpire_evaluator::{DeliveryOverrides, RunningEvaluator};
use umpire_ingest::RunningIngest;
use umpire_ingest::config::{IngestConfig, ListenAddresses};
use umpire_nats::connect::NatsSettings;
use umpire_nats::names::ProjectNames;
use umpire_runtime::readiness::Readiness;

use crate::adapt::{Adapted, Environment, adapt};
use crate::demo::Demo;
use crate::nats_server::{NatsServerError, PrivateNats};
use crate::resources::{LoadError, LocalResources, mount_dirs};
use crate::view::render::{OutputFormat, Renderer};
use crate::view::{
    AlertState, AlertStats, Board, JudgeStats, LocalEvent, PolicySource, PolicyStats,
    ProjectSource, ProjectStats,
};
use crate::{LocalOptions, nth_port};

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

struct Workers {
    ingests: Vec<(String, RunningIngest)>,
    evaluators: Vec<(String, RunningEvaluator)>,
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
    if !client.server_info().jetstream {
        return Err(error(
            "JetStream is not enabled (start nats-server with -js)".into(),
        ));
    }
    Ok(client)
}

async fn start_workers(
    options: &LocalOptions,
    adapted: &Adapted,
    nats: &NatsSettings,
    mounts: &std::path::Path,
    board: &Arc<std::sync::OnceLock<Board>>,
    stop: &CancellationToken,
) -> Result<Workers, LocalError> {
    let resources = &adapted.resources;
    let mut ingests = Vec::new();
    for (index, project) in resources.projects.iter().enumerate() {
        let offset = u16::try_from(index).unwrap_or(u16::MAX);
        let (_, secrets) = mount_dirs(mounts, &project.namespace);
        let mut config = IngestConfig::for_project(
            &project.namespace,
            &project.name,
            project.spec.clone(),
            nats.clone(),
        );
        config.listen = ListenAddresses {
            grpc: nth_port(options.grpc_listen, offset.saturating_mul(2)),
            http: nth_port(options.http_listen, offset.saturating_mul(2)),
            admin: nth_port(options.admin_listen, offset),
        };
        config.member_id = Some(format!("local-{}", project.name));
        config.auth_token_file = project
            .spec
            .ingest
            .as_ref()
            .and_then(|i| i.auth.as_ref())
            .map(|a| {
                secrets
                    .join(&a.bearer_token_secret_ref.name)
                    .join(&a.bearer_token_secret_ref.key)
            });
        let name = format!("{}/{}", project.namespace, project.name);
        let running = umpire_ingest::start(config, stop.child_token())
            .await
            .map_err(|e| LocalError::Worker {
                what: format!("ingest for TraceProject {name}"),
                message: e.to_string(),
            })?;
        ingests.push((name, running));
    }
    let mut evaluators = Vec::new();
    for (index, policy) in resources.policies.iter().enumerate() {
        let offset = u16::try_from(resources.projects.len() + index).unwrap_or(u16::MAX);
        let (config_maps, secrets) = mount_dirs(mounts, &policy.namespace);
        let mut config = EvaluatorConfig::for_policy(
            &policy.namespace,
            &policy.name,
            policy.spec.clone(),
            nats.clone(),
            Some(secrets),
            Some(config_maps),
        );
        config.admin_listen = nth_port(options.admin_listen, offset);
        let name = format!("{}/{}", policy.namespace, policy.name);
        let printed: BTreeSet<String> = adapted
            .printed_routes
            .iter()
            .find(|(p, _)| p == &name)
            .map(|(_, routes)| routes.clone())
            .unwrap_or_default();
        let cell = board.clone();
        let overrides = DeliveryOverrides {
            printed: PrintedRoutes::Only(printed),
            observer: Some(DeliveryObserver::new(move |report| {
                if let Some(board) = cell.get() {
                    board.record_delivery(report);
                }
            })),
        };
        let running = umpire_evaluator::start_with(config, overrides, stop.child_token())
            .await
            .map_err(|e| LocalError::Worker {
                what: format!("evaluator for EvalPolicy {name}"),
                message: e.to_string(),
            })?;
        evaluators.push((policy.name.clone(), running));
    }
    Ok(Workers {
        ingests,
        evaluators,
    })
}

fn build_board(workers: &Workers, adapted: &Adapted) -> Board {
    let projects = workers
        .ingests
        .iter()
        .zip(&adapted.resources.projects)
        .map(|((_, running), project)| ProjectSource {
            stats: ProjectStats {
                name: project.name.clone(),
                grpc: running.grpc_addr.to_string(),
                http: running.http_addr.to_string(),
                spans_received: 0,
                spans_kept: 0,
            },
            metrics: running.metrics.clone(),
        })
        .collect();
    let policies = workers
        .evaluators
        .iter()
        .zip(&adapted.resources.policies)
        .map(|((_, running), policy)| PolicySource {
            stats: PolicyStats {
                name: policy.name.clone(),
                project: policy.spec.project_ref.name.clone(),
                judges: policy
                    .spec
                    .judges
                    .iter()
                    .map(|j| JudgeStats::named(&j.name))
                    .collect(),
                alerts: policy
                    .spec
                    .alerts
                    .iter()
                    .flatten()
                    .map(|a| AlertStats {
                        rule: a.name.clone(),
                        state: AlertState::Ok,
                        fired: 0,
                    })
                    .collect(),
            },
            alert_metrics: running.alert_metrics.clone(),
        })
        .collect();
    Board::new(projects, policies)
}

/// Follows each policy's published scores (a core subscription: the view may miss some
/// under load, the stream keeps them all).
async fn subscribe_scores(
    client: &async_nats::Client,
    adapted: &Adapted,
    board: &Board,
) -> Result<Vec<JoinHandle<()>>, LocalError> {
    let mut feeders = Vec::new();
    for policy in &adapted.resources.policies {
        let names = ProjectNames::new(&policy.namespace, &policy.spec.project_ref.name);
        let subject = names.scores_subject(&policy.name);
        let mut subscription =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| LocalError::Nats {
                    url: subject.clone(),
                    message: e.to_string(),
                })?;
        let board = board.clone();
        feeders.push(tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                if let Ok(evaluation) = serde_json::from_slice::<SpanEvaluation>(&message.payload) {
                    board.record_scores(&evaluation);
                }
            }
        }));
    }
    Ok(feeders)
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
