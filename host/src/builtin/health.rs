//! `grpc.health.v1.Health`: `""` for the host, and one entry per service a plugin
//! serves, SERVING while one does. A removed service becomes unknown (NOT_FOUND to
//! Check, SERVICE_UNKNOWN to Watch); at shutdown everything turns NOT_SERVING before the
//! listener closes, and Watch streams end after saying so.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::Viewer;
use super::pb::health::health_check_response::ServingStatus;
use super::pb::health::health_server::Health;
use super::pb::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use crate::registry::{BUILT_IN_SERVICES, Registry};

/// Most services one List answers; past it the call is RESOURCE_EXHAUSTED, as the health
/// protocol asks of a server with more than it will list.
const MAX_LISTED: usize = 100;

/// The health service: the routing table it reads, and whether the host is stopping.
#[derive(Clone)]
pub(crate) struct HealthService {
    registry: Arc<Registry>,
    stopping: watch::Sender<bool>,
}

impl HealthService {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            stopping: watch::Sender::new(false),
        }
    }

    /// Told when the host starts stopping (`true` from then on).
    pub(crate) fn draining(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The host is stopping: every status turns NOT_SERVING, and watchers are told.
    pub(crate) fn shutting_down(&self) {
        self.stopping.send_replace(true);
    }

    /// What `viewer` is told of `service`: `None` when it is not one the viewer may see.
    fn status(&self, viewer: &Viewer, service: &str) -> Option<ServingStatus> {
        self.status_while(viewer, service, *self.stopping.borrow())
    }

    /// The same, the host stopping or not as `stopping` says.
    fn status_while(
        &self,
        viewer: &Viewer,
        service: &str,
        stopping: bool,
    ) -> Option<ServingStatus> {
        let known = service.is_empty()
            || BUILT_IN_SERVICES.contains(&service)
            || self.visible(viewer).contains_key(service);
        known.then_some(serving(stopping))
    }

    fn serving(&self) -> ServingStatus {
        serving(*self.stopping.borrow())
    }

    fn visible(&self, viewer: &Viewer) -> BTreeMap<String, Arc<plugrpc_runtime::Plugin>> {
        self.registry
            .visible(viewer.identity.as_deref(), viewer.host.as_deref())
    }
}

/// Every known service's status while the host is stopping, or not.
fn serving(stopping: bool) -> ServingStatus {
    if stopping {
        ServingStatus::NotServing
    } else {
        ServingStatus::Serving
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

/// The statuses a Watch stream sends.
type Watching = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let viewer = Viewer::of(&request);
        let service = &request.get_ref().service;
        match self.status(&viewer, service) {
            Some(status) => Ok(Response::new(answer(status))),
            None => Err(Status::not_found(format!(
                "no service {service:?} is served here"
            ))),
        }
    }

    async fn list(
        &self,
        request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        let viewer = Viewer::of(&request);
        let serving = self.serving();
        let names = std::iter::once(String::new())
            .chain(BUILT_IN_SERVICES.iter().map(|s| (*s).to_owned()))
            .chain(self.visible(&viewer).into_keys());
        let statuses: std::collections::HashMap<String, HealthCheckResponse> =
            names.map(|name| (name, answer(serving))).collect();
        if statuses.len() > MAX_LISTED {
            return Err(Status::resource_exhausted(format!(
                "{} services are served here, more than the {MAX_LISTED} one List answers",
                statuses.len()
            )));
        }
        Ok(Response::new(HealthListResponse { statuses }))
    }

    type WatchStream = Watching;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Watching>, Status> {
        let watch = Watch {
            viewer: Viewer::of(&request),
            service: request.into_inner().service,
            health: self.clone(),
            changes: self.registry.subscribe(),
            stopping: self.stopping.subscribe(),
            last: None,
            ended: false,
        };
        Ok(Response::new(Box::pin(futures::stream::unfold(
            watch,
            Watch::next,
        ))))
    }
}

/// One Watch stream: what it last sent, and the changes it waits on.
struct Watch {
    viewer: Viewer,
    service: String,
    health: HealthService,
    changes: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
    last: Option<ServingStatus>,
    ended: bool,
}

impl Watch {
    /// The next status that differs from the last one sent, waiting for a change.
    async fn next(mut self) -> Option<(Result<HealthCheckResponse, Status>, Self)> {
        loop {
            if self.ended {
                return None;
            }
            self.changes.mark_unchanged();
            self.stopping.mark_unchanged();
            // Read once: the status and the decision to end follow the same value.
            let stopping = *self.stopping.borrow();
            let status = self
                .health
                .status_while(&self.viewer, &self.service, stopping)
                .unwrap_or(ServingStatus::ServiceUnknown);
            // Stopping is the last word: the stream ends so it cannot hold the drain.
            if self.last != Some(status) {
                self.last = Some(status);
                self.ended = stopping;
                return Some((Ok(answer(status)), self));
            }
            if stopping {
                return None;
            }
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                changed = self.stopping.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}
