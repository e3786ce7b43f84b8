//! Server reflection, `grpc.reflection.v1` and `v1alpha`, over the plugins serving now:
//! list services, file by filename, file containing a symbol or an extension, and a
//! type's extension numbers. A plugin dropped in is in the next answer; the built-in
//! services are listed and described too. Files go out with their dependencies, each
//! file once per stream, as grpc-go's server does.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use futures::{Stream, StreamExt};
use prost::Message;
use prost_reflect::{DescriptorPool, FileDescriptor};
use tonic::{Request, Response, Status, Streaming};

use super::pb::reflection::server_reflection_request::MessageRequest;
use super::pb::reflection::server_reflection_response::MessageResponse;
use super::pb::reflection::server_reflection_server::ServerReflection;
use super::pb::reflection::{
    ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse,
    ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
};
use super::pb::reflection_v1alpha as alpha;
use super::{DESCRIPTORS, Viewer};
use crate::registry::{BUILT_IN_SERVICES, Registry};

/// The built-in services' descriptors, decoded once.
static BUILT_IN: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(DESCRIPTORS).unwrap_or_else(|error| {
        // Made by build.rs from protos protox compiled: cannot fail but for a build bug.
        tracing::error!("the built-in services' descriptors do not decode: {error}");
        DescriptorPool::new()
    })
});

/// The reflection service (v1); [`V1Alpha`] serves the same answers to older clients.
#[derive(Clone)]
pub(crate) struct Reflection {
    registry: Arc<Registry>,
}

impl Reflection {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// What `viewer` may see now: the services, and the descriptor pools to search
    /// (the built-ins' first).
    fn snapshot(&self, viewer: &Viewer) -> Snapshot {
        let visible = self
            .registry
            .visible(viewer.identity.as_deref(), viewer.host.as_deref());
        let mut pools = vec![BUILT_IN.clone()];
        let mut seen = HashSet::new();
        for plugin in visible.values() {
            if seen.insert(Arc::as_ptr(plugin))
                && let Some(service) = plugin.services().first()
            {
                pools.push(service.parent_pool().clone());
            }
        }
        let mut services: Vec<(String, Option<DescriptorPool>)> = BUILT_IN_SERVICES
            .iter()
            .map(|s| ((*s).to_owned(), Some(BUILT_IN.clone())))
            .collect();
        services.extend(visible.into_iter().map(|(name, plugin)| {
            let pool = plugin.services().first().map(|s| s.parent_pool().clone());
            (name, pool)
        }));
        services.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot { services, pools }
    }

    /// The answer to one request, given the files this stream already sent.
    fn answer(
        &self,
        viewer: &Viewer,
        request: ServerReflectionRequest,
        sent: &mut HashSet<String>,
    ) -> ServerReflectionResponse {
        let snapshot = self.snapshot(viewer);
        let response = match &request.message_request {
            None => Err(Status::invalid_argument("the request names no question")),
            Some(MessageRequest::ListServices(_)) => {
                Ok(MessageResponse::ListServicesResponse(ListServiceResponse {
                    service: snapshot
                        .services
                        .iter()
                        .map(|(name, _)| ServiceResponse { name: name.clone() })
                        .collect(),
                }))
            }
            Some(MessageRequest::FileByFilename(name)) => snapshot
                .file(name)
                .ok_or_else(|| Status::not_found(format!("no file {:?}", shown(name))))
                .map(|file| files_with_dependencies(&file, sent)),
            Some(MessageRequest::FileContainingSymbol(symbol)) => snapshot
                .file_containing(symbol)
                .ok_or_else(|| Status::not_found(format!("no symbol {:?}", shown(symbol))))
                .map(|file| files_with_dependencies(&file, sent)),
            Some(MessageRequest::FileContainingExtension(extension)) => snapshot
                .file_extending(&extension.containing_type, extension.extension_number)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "no extension {} of {:?}",
                        extension.extension_number,
                        shown(&extension.containing_type)
                    ))
                })
                .map(|file| files_with_dependencies(&file, sent)),
            Some(MessageRequest::AllExtensionNumbersOfType(name)) => snapshot
                .extension_numbers(name)
                .ok_or_else(|| Status::not_found(format!("no message type {:?}", shown(name))))
                .map(|numbers| {
                    MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                        base_type_name: name.clone(),
                        extension_number: numbers,
                    })
                }),
        };
        let message_response = response.unwrap_or_else(|status| {
            MessageResponse::ErrorResponse(ErrorResponse {
                error_code: status.code() as i32,
                error_message: status.message().to_owned(),
            })
        });
        ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request),
            message_response: Some(message_response),
        }
    }
}

/// What one viewer may see at one moment.
struct Snapshot {
    /// Every service name it may call, built-ins included, sorted, with the descriptors
    /// of the plugin serving it (a service is described by its server, never by another
    /// plugin that happens to carry a copy of its file).
    services: Vec<(String, Option<DescriptorPool>)>,
    /// Where their descriptors are, the built-ins' first.
    pools: Vec<DescriptorPool>,
}

impl Snapshot {
    fn file(&self, name: &str) -> Option<FileDescriptor> {
        self.pools
            .iter()
            .find_map(|pool| pool.get_file_by_name(name))
    }

    /// The file defining `symbol`: a service, method, message, enum or extension. A
    /// service (or its method) the viewer may not call is not found, even when a plugin
    /// it may call defines it.
    fn file_containing(&self, symbol: &str) -> Option<FileDescriptor> {
        let service = |name: &str| {
            let (_, pool) = self.services.iter().find(|(s, _)| s == name)?;
            pool.as_ref()?.get_service_by_name(name)
        };
        if let Some(found) = service(symbol) {
            return Some(found.parent_file());
        }
        if let Some((parent, method)) = symbol.rsplit_once('.')
            && let Some(found) = service(parent)
            && found.methods().any(|m| m.name() == method)
        {
            return Some(found.parent_file());
        }
        self.pools.iter().find_map(|pool| {
            pool.get_message_by_name(symbol)
                .map(|m| m.parent_file())
                .or_else(|| pool.get_enum_by_name(symbol).map(|e| e.parent_file()))
                .or_else(|| pool.get_extension_by_name(symbol).map(|e| e.parent_file()))
        })
    }

    fn file_extending(&self, message: &str, number: i32) -> Option<FileDescriptor> {
        let number = u32::try_from(number).ok()?;
        self.pools.iter().find_map(|pool| {
            pool.get_message_by_name(message)?
                .extensions()
                .find(|extension| extension.number() == number)
                .map(|extension| extension.parent_file())
        })
    }

    /// The extension numbers of `message` across every pool (each plugin may extend it).
    fn extension_numbers(&self, message: &str) -> Option<Vec<i32>> {
        let mut found = false;
        let mut numbers = std::collections::BTreeSet::new();
        for message in self
            .pools
            .iter()
            .filter_map(|pool| pool.get_message_by_name(message))
        {
            found = true;
            numbers.extend(
                message
                    .extensions()
                    .filter_map(|extension| i32::try_from(extension.number()).ok()),
            );
        }
        found.then(|| numbers.into_iter().collect())
    }
}

/// A name from a request as an error message repeats it: at most 200 characters.
fn shown(name: &str) -> &str {
    name.char_indices()
        .nth(200)
        .map_or(name, |(at, _)| &name[..at])
}

/// `file` and every file it depends on that this stream has not sent yet (`file` itself
/// always goes: it is the answer).
fn files_with_dependencies(file: &FileDescriptor, sent: &mut HashSet<String>) -> MessageResponse {
    // prost-reflect's own encoding keeps options' extensions (google.api.http, custom
    // options), which the prost-types struct would drop.
    let mut encoded = vec![file.encode_to_vec()];
    sent.insert(file.name().to_owned());
    let mut pending: Vec<FileDescriptor> = file.dependencies().collect();
    while let Some(dependency) = pending.pop() {
        if sent.insert(dependency.name().to_owned()) {
            encoded.push(dependency.encode_to_vec());
            pending.extend(dependency.dependencies());
        }
    }
    MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
        file_descriptor_proto: encoded,
    })
}

/// The answers of one reflection stream.
type Answers = Pin<Box<dyn Stream<Item = Result<ServerReflectionResponse, Status>> + Send>>;

impl Reflection {
    /// Answers each request of a stream in turn.
    fn answers(&self, viewer: Viewer, requests: Streaming<ServerReflectionRequest>) -> Answers {
        let reflection = self.clone();
        let mut sent = HashSet::new();
        Box::pin(requests.map(move |request| {
            request.map(|request| reflection.answer(&viewer, request, &mut sent))
        }))
    }
}

#[tonic::async_trait]
impl ServerReflection for Reflection {
    type ServerReflectionInfoStream = Answers;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<ServerReflectionRequest>>,
    ) -> Result<Response<Answers>, Status> {
        let viewer = Viewer::of(&request);
        Ok(Response::new(self.answers(viewer, request.into_inner())))
    }
}

/// Reflection for `v1alpha` clients (grpcurl and many tools still ask it): the same
/// messages under another package, so each crosses by its bytes.
#[derive(Clone)]
pub(crate) struct V1Alpha(pub(crate) Reflection);

/// The answers of one v1alpha stream.
type AlphaAnswers =
    Pin<Box<dyn Stream<Item = Result<alpha::ServerReflectionResponse, Status>> + Send>>;

/// A message as its twin of the other version: the two share every field number.
fn twin<A: Message, B: Message + Default>(message: &A) -> Result<B, Status> {
    B::decode(message.encode_to_vec().as_slice())
        .map_err(|error| Status::internal(format!("reflection message did not convert: {error}")))
}

#[tonic::async_trait]
impl alpha::server_reflection_server::ServerReflection for V1Alpha {
    type ServerReflectionInfoStream = AlphaAnswers;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<alpha::ServerReflectionRequest>>,
    ) -> Result<Response<AlphaAnswers>, Status> {
        let viewer = Viewer::of(&request);
        let reflection = self.0.clone();
        let mut sent = HashSet::new();
        let answers = request.into_inner().map(move |request| {
            let request: ServerReflectionRequest = twin(&request?)?;
            twin(&reflection.answer(&viewer, request, &mut sent))
        });
        Ok(Response::new(Box::pin(answers)))
    }
}
