//! Glue between the exported WIT functions and the plugin's generated servers.

use crate::bindings::plugrpc::plugin::streams::{RequestStream, ResponseStream};
use crate::bindings::plugrpc::plugin::types::{
    CallInfo, Manifest, MetadataEntry, Reply, Status as WitStatus,
};
use crate::context::Context;
use crate::service::Service;
use crate::status::Status;
use crate::stream::{RawRequests, RawSink};

/// The services a plugin exports, built once per instance by [`export!`](crate::export).
pub type Plugin = [Box<dyn Service>];

/// The manifest the host reads at load time.
pub fn describe(name: &str, version: &str, stateless: bool, plugin: &Plugin) -> Manifest {
    Manifest {
        stateless,
        name: name.to_owned(),
        version: version.to_owned(),
        services: plugin.iter().map(|s| s.name().to_owned()).collect(),
        file_descriptor_set: plugin
            .first()
            .map(|s| s.file_descriptor_set().to_vec())
            .unwrap_or_default(),
    }
}

/// Runs a unary call.
pub fn unary(plugin: &Plugin, call: CallInfo, request: Vec<u8>) -> Result<Reply, WitStatus> {
    let cx = Context::new(call);
    let (service, method) = route(plugin, &cx)?;
    let message = service.unary(&cx, method, &request)?;
    Ok(reply(&cx, message))
}

/// Runs a server-streaming call.
pub fn server_streaming(
    plugin: &Plugin,
    call: CallInfo,
    request: Vec<u8>,
    out: &ResponseStream,
) -> Result<Vec<MetadataEntry>, WitStatus> {
    let cx = Context::new(call);
    let (service, method) = route(plugin, &cx)?;
    let sink = RawSink::new(out, &cx);
    service.server_streaming(&cx, method, &request, sink)?;
    sink.flush_headers()?;
    Ok(cx.take_trailers())
}

/// Runs a client-streaming call.
pub fn client_streaming(
    plugin: &Plugin,
    call: CallInfo,
    input: &RequestStream,
) -> Result<Reply, WitStatus> {
    let cx = Context::new(call);
    let (service, method) = route(plugin, &cx)?;
    let message = service.client_streaming(&cx, method, RawRequests::new(input))?;
    Ok(reply(&cx, message))
}

/// Runs a bidirectional-streaming call.
pub fn bidi_streaming(
    plugin: &Plugin,
    call: CallInfo,
    input: &RequestStream,
    out: &ResponseStream,
) -> Result<Vec<MetadataEntry>, WitStatus> {
    let cx = Context::new(call);
    let (service, method) = route(plugin, &cx)?;
    let sink = RawSink::new(out, &cx);
    service.bidi_streaming(
        &cx,
        method,
        RawRequests::new(input).flushing_headers_to(sink),
        sink,
    )?;
    sink.flush_headers()?;
    Ok(cx.take_trailers())
}

fn reply(cx: &Context, message: Vec<u8>) -> Reply {
    Reply {
        message,
        headers: cx.take_headers().unwrap_or_default(),
        trailers: cx.take_trailers(),
    }
}

/// Finds the service and short method name for `/package.Service/Method`.
fn route<'p>(plugin: &'p Plugin, cx: &'p Context) -> Result<(&'p dyn Service, &'p str), Status> {
    let path = cx.method();
    let (service_name, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .ok_or_else(|| Status::unimplemented(format!("malformed method path {path:?}")))?;
    plugin
        .iter()
        .find(|s| s.name() == service_name)
        .map(|s| (s.as_ref(), method))
        .ok_or_else(|| Status::unimplemented(format!("this plugin does not serve {service_name}")))
}

/// Exports generated servers as this plugin: `export!(greeter_server::GreeterServer<MyGreeter>);`
///
/// Each server's handler type must implement `Default`: the host runs each call in a fresh
/// instance, which builds its handlers on first use. Several servers may be listed.
///
/// `export!(stateless: GreeterServer<MyGreeter>);` declares that no call depends on what
/// an earlier call left behind (statics, caches, the handlers' own fields), so the host
/// may serve calls one after another from a reused instance: much cheaper per call. The
/// host still never runs two calls in one instance at once, and discards an instance
/// after any trap, limit or cancelled call.
#[macro_export]
macro_rules! export {
    (@plugin $stateless:literal; $($server:ty),+) => {
        struct __PlugrpcPlugin;

        ::std::thread_local! {
            static __PLUGRPC_SERVICES: ::std::vec::Vec<::std::boxed::Box<dyn $crate::Service>> =
                ::std::vec![$(::std::boxed::Box::new(<$server as ::std::default::Default>::default())),+];
        }

        impl $crate::bindings::exports::plugrpc::plugin::handler::Guest for __PlugrpcPlugin {
            fn describe() -> $crate::bindings::plugrpc::plugin::types::Manifest {
                __PLUGRPC_SERVICES.with(|p| {
                    $crate::__private::describe(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                        $stateless,
                        p,
                    )
                })
            }
            fn unary(
                call: $crate::bindings::plugrpc::plugin::types::CallInfo,
                request: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<
                $crate::bindings::plugrpc::plugin::types::Reply,
                $crate::bindings::plugrpc::plugin::types::Status,
            > {
                __PLUGRPC_SERVICES.with(|p| $crate::__private::unary(p, call, request))
            }
            fn server_streaming(
                call: $crate::bindings::plugrpc::plugin::types::CallInfo,
                request: ::std::vec::Vec<u8>,
                out: &$crate::bindings::plugrpc::plugin::streams::ResponseStream,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::bindings::plugrpc::plugin::types::MetadataEntry>,
                $crate::bindings::plugrpc::plugin::types::Status,
            > {
                __PLUGRPC_SERVICES.with(|p| $crate::__private::server_streaming(p, call, request, out))
            }
            fn client_streaming(
                call: $crate::bindings::plugrpc::plugin::types::CallInfo,
                input: &$crate::bindings::plugrpc::plugin::streams::RequestStream,
            ) -> ::std::result::Result<
                $crate::bindings::plugrpc::plugin::types::Reply,
                $crate::bindings::plugrpc::plugin::types::Status,
            > {
                __PLUGRPC_SERVICES.with(|p| $crate::__private::client_streaming(p, call, input))
            }
            fn bidi_streaming(
                call: $crate::bindings::plugrpc::plugin::types::CallInfo,
                input: &$crate::bindings::plugrpc::plugin::streams::RequestStream,
                out: &$crate::bindings::plugrpc::plugin::streams::ResponseStream,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::bindings::plugrpc::plugin::types::MetadataEntry>,
                $crate::bindings::plugrpc::plugin::types::Status,
            > {
                __PLUGRPC_SERVICES.with(|p| $crate::__private::bidi_streaming(p, call, input, out))
            }
        }

        #[allow(unsafe_code)]
        mod __plugrpc_export {
            use super::__PlugrpcPlugin;
            $crate::bindings::__export_plugin!(__PlugrpcPlugin with_types_in $crate::bindings);
        }
    };
    (stateless: $($server:ty),+ $(,)?) => {
        $crate::export!(@plugin true; $($server),+);
    };
    ($($server:ty),+ $(,)?) => {
        $crate::export!(@plugin false; $($server),+);
    };
}
