//! Embeddings for async callers: one thread runs the model, and requests that arrive while
//! it is busy are embedded together in the next batch (a forward pass over 32 texts costs
//! far less than 32 passes over one). The model's matrix kernels already use every core,
//! so one thread is all it needs; the bounded queue makes callers wait when it is behind.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use umpire_core::embedding::{EmbedFailure, TextEmbedder};

/// Texts embedded per forward pass at most (requests are never split).
const MAX_BATCH_TEXTS: usize = 32;
/// Requests waiting for the model thread.
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedFailure>>;

/// A handle to the model thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone)]
pub struct EmbeddingBatcher {
    requests: mpsc::Sender<(Vec<String>, Reply)>,
    model: Arc<str>,
}

impl std::fmt::Debug for EmbeddingBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingBatcher")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl EmbeddingBatcher {
    pub fn spawn(embedder: Arc<dyn TextEmbedder>) -> Self {
        let (requests, mut queue) = mpsc::channel::<(Vec<String>, Reply)>(QUEUE);
        let model: Arc<str> = embedder.model().into();
        std::thread::Builder::new()
            .name("umpire-embed".into())
            .spawn(move || {
                while let Some(first) = queue.blocking_recv() {
                    let mut batch = vec![first];
                    let mut texts = batch[0].0.len();
                    while texts < MAX_BATCH_TEXTS {
                        match queue.try_recv() {
                            Ok(request) => {
                                texts += request.0.len();
                                batch.push(request);
                            }
                            Err(_) => break,
                        }
                    }
                    run(embedder.as_ref(), batch);
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(event = "embedding_thread_failed", error = %e));
        Self { requests, model }
    }

    /// Loads the model in `dir` (off the async workers: it reads ~90 MB) and starts its
    /// thread.
    pub async fn load(dir: std::path::PathBuf) -> Result<Self, crate::LoadError> {
        let shown = dir.clone();
        let embedder = tokio::task::spawn_blocking(move || crate::SentenceEmbedder::load(&dir))
            .await
            .map_err(|e| crate::LoadError::Invalid {
                path: shown,
                message: format!("loading stopped: {e}"),
            })??;
        tracing::info!(
            event = "embedding_model_loaded",
            model = embedder.model(),
            dimensions = embedder.dimensions()
        );
        Ok(Self::spawn(Arc::new(embedder)))
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The texts' vectors, in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((texts, reply))
            .await
            .map_err(|_| EmbedFailure("the embedding thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| EmbedFailure("the embedding thread has stopped".into()))?
    }
}

fn run(embedder: &dyn TextEmbedder, batch: Vec<(Vec<String>, Reply)>) {
    let all: Vec<&str> = batch
        .iter()
        .flat_map(|(texts, _)| texts.iter().map(String::as_str))
        .collect();
    match embedder.embed(&all) {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            for (texts, reply) in batch {
                let mine: Vec<Vec<f32>> = vectors.by_ref().take(texts.len()).collect();
                let _ = reply.send(Ok(mine));
            }
        }
        // One request's text must not fail the others batched with it: each alone.
        Err(_) if batch.len() > 1 => {
            for request in batch {
                run(embedder, vec![request]);
            }
        }
        Err(failure) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(failure.clone()));
            }
        }
    }
}
