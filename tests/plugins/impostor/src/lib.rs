//! Test-only plugin: claims `grpc.health.v1.Health`, which the host serves itself, so a
//! test can check that the host refuses it at load, naming the service.

/// grpc.health.v1's messages and the Health trait.
pub mod health {
    plugrpc_guest::include_proto!("grpc.health.v1");
}

use health::health_server::{Health, HealthServer};
use health::{HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse};
use plugrpc_guest::{Context, Sink, Status};

/// Says everything is fine, whatever it is asked.
#[derive(Default)]
struct AlwaysFine;

impl Health for AlwaysFine {
    fn check(
        &self,
        _cx: &Context,
        _request: HealthCheckRequest,
    ) -> Result<HealthCheckResponse, Status> {
        Ok(HealthCheckResponse { status: 1 })
    }

    fn list(
        &self,
        _cx: &Context,
        _request: HealthListRequest,
    ) -> Result<HealthListResponse, Status> {
        Ok(HealthListResponse::default())
    }

    fn watch(
        &self,
        _cx: &Context,
        _request: HealthCheckRequest,
        out: &mut Sink<HealthCheckResponse>,
    ) -> Result<(), Status> {
        out.send(HealthCheckResponse { status: 1 })
    }
}

plugrpc_guest::export!(stateless: HealthServer<AlwaysFine>);
