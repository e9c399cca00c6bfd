//! Starting the workers of one `umpire local` run, and wiring them to the live view.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_alerting::delivery::report::{DeliveryObserver, PrintedRoutes};
use umpire_contract::evaluator::EvaluatorConfig;
use umpire_contract::ingest::{IngestConfig, ListenAddresses};
use umpire_core::score::evaluations_of_message;
use umpire_evaluator::{DeliveryOverrides, RunningEvaluator};
use umpire_ingest::RunningIngest;
use umpire_nats::connect::NatsSettings;
use umpire_nats::topology::ProjectNames;

use crate::adapt::Adapted;
use crate::resources::mount_dirs;
use crate::session::LocalError;
use crate::view::{
    AlertState, AlertStats, Board, JudgeStats, PolicySource, PolicyStats, ProjectSource,
    ProjectStats,
};
use crate::{LocalOptions, nth_port};

pub(crate) struct Workers {
    pub ingests: Vec<(String, RunningIngest)>,
    pub evaluators: Vec<(String, RunningEvaluator)>,
}

pub(crate) async fn start_workers(
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
        let mut spec = project.spec.clone();
        if let Some(endpoint) = &options.export_otlp {
            spec.export
                .get_or_insert_with(Vec::new)
                .push(umpire_export::ad_hoc_target("local-export", endpoint));
        }
        let mut config =
            IngestConfig::for_project(&project.namespace, &project.name, spec, nats.clone());
        config.secret_dir = Some(secrets.clone());
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
        config.embedding_model = options.embedding_model.clone();
        config.state_replicas = resources
            .projects
            .iter()
            .find(|p| p.namespace == policy.namespace && p.name == policy.spec.project_ref.name)
            .map_or(1, |p| p.spec.stream_replicas());
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

pub(crate) fn build_board(workers: &Workers, adapted: &Adapted) -> Board {
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
pub(crate) async fn subscribe_scores(
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
                for evaluation in evaluations_of_message(&message.payload).unwrap_or_default() {
                    board.record_scores(&evaluation);
                }
            }
        }));
    }
    Ok(feeders)
}
