//! Admission before a body is read. Every OTLP request draws from one byte budget while its
//! body arrives, and holds what it drew until it is answered; a request that would take the
//! process past the budget is refused as retryable (HTTP 429, gRPC RESOURCE_EXHAUSTED with
//! RetryInfo) instead of being read. A body must also arrive within a deadline, so a slow
//! client cannot hold its share for ever.
//!
//! Before this, bodies were read, decompressed and decoded first and the in-flight limit
//! applied after: 200 concurrent 4 MiB requests took the process to 1 GiB.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::metrics::{AdmissionLabels, IngestMetrics, Protocol};

/// Bytes held per body byte at a request's peak: the body's frames and their contiguous copy
/// (2×), its decoded form (~1–3× its encoding, while the body is still alive) and the
/// per-partition encodings and their compression published to the intake. 4 was measured
/// too low: the process peaked 2–3× above the charged bytes.
pub const EXPANSION: usize = 6;

/// How long a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmissionError {
    #[error(
        "ingest is at its in-flight request budget ({budget} bytes, from its memory limit); retry later"
    )]
    Overloaded { budget: usize },
    #[error("the request body did not arrive within {0:?}")]
    TimedOut(Duration),
}

impl AdmissionError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Overloaded { .. } => "budget",
            Self::TimedOut(_) => "body_timeout",
        }
    }
}

/// The byte budget shared by both receivers.
pub struct Admission {
    budget: Arc<Semaphore>,
    capacity: usize,
    max_request_bytes: usize,
    body_timeout: Duration,
    metrics: Arc<IngestMetrics>,
}

impl Admission {
    /// `capacity` is in charged bytes (body bytes × [`EXPANSION`]).
    pub fn new(capacity: usize, max_request_bytes: usize, metrics: Arc<IngestMetrics>) -> Self {
        // Semaphores count in u32 per acquisition and usize overall; one request's charge
        // must fit the budget or no request of that size could ever be admitted.
        let capacity = capacity
            .max(max_request_bytes.saturating_mul(EXPANSION))
            .min(Semaphore::MAX_PERMITS);
        Self {
            budget: Arc::new(Semaphore::new(capacity)),
            capacity,
            max_request_bytes,
            body_timeout: BODY_TIMEOUT,
            metrics,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Draws `bytes` of body into `ticket`, or refuses.
    fn charge(&self, ticket: &Ticket, bytes: usize) -> Result<(), AdmissionError> {
        let charge = u32::try_from(bytes.saturating_mul(EXPANSION)).unwrap_or(u32::MAX);
        if charge == 0 {
            return Ok(());
        }
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(charge)
            .map_err(|_| AdmissionError::Overloaded {
                budget: self.capacity,
            })?;
        self.metrics.request_bytes_in_flight.inc_by(charge as i64);
        let mut held = ticket.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_mut() {
            Some(existing) => existing.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }

    fn refused(&self, protocol: Protocol, error: &AdmissionError) {
        self.metrics
            .admission_refused
            .get_or_create(&AdmissionLabels {
                protocol,
                reason: error.reason(),
            })
            .inc();
    }
}

/// What one request holds of the budget; released when the request is answered and its
/// body dropped (both hold the ticket).
struct Ticket {
    held: Mutex<Option<OwnedSemaphorePermit>>,
    metrics: Arc<IngestMetrics>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(permit) = held.take() {
            self.metrics
                .request_bytes_in_flight
                .dec_by(permit.num_permits() as i64);
        }
    }
}

/// How a receiver's protocol carries bodies and refusals.
pub trait AdmissionProtocol: Send + Sync + 'static {
    type Body: Body<Data = Bytes> + Send + Unpin + 'static;
    type ResponseBody: Send + 'static;
    const PROTOCOL: Protocol;
    /// Whether the body is compressed: its decompressed size is known only once read, so
    /// the whole decompressed limit is charged up front.
    fn compressed(headers: &HeaderMap) -> bool;
    fn wrap(body: MeteredBody<Self::Body>) -> Self::Body;
}

/// Puts [`Admitted`] in front of a receiver's service.
pub struct AdmissionLayer<P> {
    admission: Arc<Admission>,
    _protocol: std::marker::PhantomData<fn() -> P>,
}

impl<P> AdmissionLayer<P> {
    pub fn new(admission: Arc<Admission>) -> Self {
        Self {
            admission,
            _protocol: std::marker::PhantomData,
        }
    }
}

impl<P> Clone for AdmissionLayer<P> {
    fn clone(&self) -> Self {
        Self::new(self.admission.clone())
    }
}

impl<S, P> tower::Layer<S> for AdmissionLayer<P> {
    type Service = Admitted<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            admission: self.admission.clone(),
            _protocol: std::marker::PhantomData,
        }
    }
}

pub struct Admitted<S, P> {
    inner: S,
    admission: Arc<Admission>,
    _protocol: std::marker::PhantomData<fn() -> P>,
}

impl<S: Clone, P> Clone for Admitted<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            admission: self.admission.clone(),
            _protocol: std::marker::PhantomData,
        }
    }
}

impl<S, P> tower::Service<Request<P::Body>> for Admitted<S, P>
where
    P: AdmissionProtocol,
    S: tower::Service<Request<P::Body>, Response = Response<P::ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<P::ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<P::Body>) -> Self::Future {
        let ticket = Arc::new(Ticket {
            held: Mutex::new(None),
            metrics: self.admission.metrics.clone(),
        });
        let compressed = P::compressed(request.headers());
        let refused = if compressed {
            self.admission
                .charge(&ticket, self.admission.max_request_bytes)
                .err()
        } else {
            None
        };
        let admission = self.admission.clone();
        let body_ticket = ticket.clone();
        let request = request.map(move |body| {
            let mut body = MeteredBody {
                inner: body,
                deadline: Box::pin(tokio::time::sleep(admission.body_timeout)),
                charged_up_front: compressed,
                protocol: P::PROTOCOL,
                ticket: body_ticket,
                admission,
                state: BodyState::Reading,
            };
            if let Some(error) = refused {
                body.refuse(error);
            }
            P::wrap(body)
        });
        let answered = self.inner.call(request);
        Box::pin(async move {
            let response = answered.await;
            drop(ticket);
            response
        })
    }
}

/// A request body that draws from the budget as frames arrive. Over budget it reads the
/// rest of the body and drops it, then fails: an HTTP/1 client still writing its body would
/// see a broken pipe instead of the retryable 429 if the answer came first. Past its
/// deadline it fails at once (a slow client is not waited for twice).
pub struct MeteredBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    charged_up_front: bool,
    protocol: Protocol,
    ticket: Arc<Ticket>,
    admission: Arc<Admission>,
    state: BodyState,
}

enum BodyState {
    Reading,
    /// Refused: discarding the rest of the body, then failing with the error.
    Draining(AdmissionError),
    Failed,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> MeteredBody<B> {
    fn refuse(&mut self, error: AdmissionError) {
        self.admission.refused(self.protocol, &error);
        self.state = BodyState::Draining(error);
    }

    fn fail(&mut self, error: AdmissionError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = BodyState::Failed;
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            if matches!(self.state, BodyState::Failed) {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if self.deadline.as_mut().poll(cx).is_ready() {
                        let error = AdmissionError::TimedOut(self.admission.body_timeout);
                        if !matches!(self.state, BodyState::Draining(_)) {
                            self.admission.refused(self.protocol, &error);
                        }
                        return self.fail(error);
                    }
                    return Poll::Pending;
                }
            };
            if let BodyState::Draining(error) = &self.state {
                match frame {
                    // Dropped: a refused body costs no memory.
                    Some(Ok(_)) => continue,
                    _ => {
                        let error = error.clone();
                        return self.fail(error);
                    }
                }
            }
            return match frame {
                Some(Ok(frame)) => {
                    if !self.charged_up_front
                        && let Some(data) = frame.data_ref()
                        && let Err(error) = self.admission.charge(&self.ticket, data.len())
                    {
                        self.refuse(error);
                        continue;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                None => Poll::Ready(None),
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.state {
            BodyState::Reading => self.inner.is_end_stream(),
            BodyState::Draining(_) => false,
            BodyState::Failed => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            BodyState::Reading => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// The admission error behind a body error, however the server wrapped it.
pub fn admission_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a AdmissionError> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(admission) = error.downcast_ref::<AdmissionError>() {
            return Some(admission);
        }
        current = error.source();
    }
    None
}
