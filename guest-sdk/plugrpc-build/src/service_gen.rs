//! Emits, per protobuf service, the trait plugin authors implement and the server that
//! routes each method to it through the SDK's shape adapters.

use std::fmt::Write as _;

use prost_build::{Method, Service, ServiceGenerator};

/// Generates services whose servers embed the descriptor file `descriptor_file`.
pub(crate) struct ServiceGen {
    /// The file in `OUT_DIR` holding this `compile` call's FileDescriptorSet.
    pub(crate) descriptor_file: String,
}

/// The four gRPC call shapes, as the descriptor declares them.
#[derive(Clone, Copy)]
enum Shape {
    Unary,
    ServerStreaming,
    ClientStreaming,
    BidiStreaming,
}

impl Shape {
    fn of(method: &Method) -> Self {
        match (method.client_streaming, method.server_streaming) {
            (false, false) => Shape::Unary,
            (false, true) => Shape::ServerStreaming,
            (true, false) => Shape::ClientStreaming,
            (true, true) => Shape::BidiStreaming,
        }
    }
}

impl ServiceGenerator for ServiceGen {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let full_name = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        let trait_name = &service.name;
        let module = format!("{}_server", snake(&service.name));
        let server = format!("{trait_name}Server");

        let _ = writeln!(
            buf,
            "/// Server side of `{full_name}`: implement [`{module}::{trait_name}`] and export [`{module}::{server}`]."
        );
        let _ = writeln!(buf, "pub mod {module} {{");
        let _ = writeln!(
            buf,
            "    #![allow(dead_code, unused_imports, unused_variables, clippy::all)]"
        );
        let _ = writeln!(
            buf,
            "    use ::plugrpc_guest::{{Context, Requests, Sink, Status}};"
        );
        doc(
            buf,
            "    ",
            &service.comments.leading,
            &format!("The handlers of `{full_name}`, one method per RPC."),
        );
        let _ = writeln!(buf, "    pub trait {trait_name} {{");
        for method in &service.methods {
            doc(
                buf,
                "        ",
                &method.comments.leading,
                &format!("Serves `/{full_name}/{}`.", method.proto_name),
            );
            let _ = writeln!(buf, "        {};", signature(method));
        }
        let _ = writeln!(buf, "    }}");
        let _ = writeln!(
            buf,
            "    /// Serves `{full_name}` by calling a [`{trait_name}`]; name it in `plugrpc_guest::export!`."
        );
        let _ = writeln!(buf, "    #[derive(Default)]");
        let _ = writeln!(buf, "    pub struct {server}<T>(pub T);");
        let _ = writeln!(
            buf,
            "    impl<T: {trait_name}> ::plugrpc_guest::Service for {server}<T> {{"
        );
        let _ = writeln!(
            buf,
            "        fn name(&self) -> &'static str {{ {full_name:?} }}"
        );
        let _ = writeln!(
            buf,
            "        fn file_descriptor_set(&self) -> &'static [u8] {{ include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{}\")) }}",
            self.descriptor_file
        );
        call(buf, &service);
        let _ = writeln!(buf, "    }}");
        let _ = writeln!(buf, "    impl<T> {server}<T> {{");
        let _ = writeln!(buf, "        /// The service's fully qualified name.");
        let _ = writeln!(
            buf,
            "        pub const SERVICE: &'static str = {full_name:?};"
        );
        let _ = writeln!(
            buf,
            "        /// The encoded FileDescriptorSet the service was generated from."
        );
        let _ = writeln!(
            buf,
            "        pub const FILE_DESCRIPTOR_SET: &'static [u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{}\"));",
            self.descriptor_file
        );
        let _ = writeln!(buf, "    }}");
        let _ = writeln!(
            buf,
            "    impl<T: ::plugrpc_guest::FromConfig> {server}<T> {{"
        );
        let _ = writeln!(
            buf,
            "        /// The server of the handler built from the plugin's config."
        );
        let _ = writeln!(
            buf,
            "        pub fn from_config(config: &::plugrpc_guest::Config) -> Result<Self, Status> {{ T::from_config(config).map(Self) }}"
        );
        let _ = writeln!(buf, "    }}");
        let _ = writeln!(buf, "}}");
        client(buf, &service, &full_name);
    }
}

/// Emits `<service>_client`: a typed client of the service over
/// `plugrpc_guest::outbound::Client`, one method per RPC, as tonic's clients are.
fn client(buf: &mut String, service: &Service, full_name: &str) {
    let module = format!("{}_client", snake(&service.name));
    let client = format!("{}Client", service.name);
    let _ = writeln!(
        buf,
        "/// Client side of `{full_name}`, for calls to it from a plugin through the host."
    );
    let _ = writeln!(buf, "pub mod {module} {{");
    let _ = writeln!(buf, "    #![allow(dead_code, unused_imports, clippy::all)]");
    let _ = writeln!(
        buf,
        "    use ::plugrpc_guest::outbound::{{Client, Responses, Streaming}};"
    );
    let _ = writeln!(buf, "    use ::plugrpc_guest::Status;");
    let _ = writeln!(
        buf,
        "    /// Calls `{full_name}` on a target the plugin is granted."
    );
    let _ = writeln!(buf, "    #[derive(Clone, Debug)]");
    let _ = writeln!(buf, "    pub struct {client} {{ inner: Client }}");
    let _ = writeln!(buf, "    impl {client} {{");
    let _ = writeln!(
        buf,
        "        /// A client of the target `alias` (`local`: the host's own plugins)."
    );
    let _ = writeln!(
        buf,
        "        pub fn new(alias: &str) -> Self {{ Self {{ inner: Client::new(alias) }} }}"
    );
    let _ = writeln!(
        buf,
        "        /// A client calling through `inner` (with its metadata and timeout)."
    );
    let _ = writeln!(
        buf,
        "        pub fn with_client(inner: Client) -> Self {{ Self {{ inner }} }}"
    );
    for method in &service.methods {
        let (name, input, output) = (
            &method.name,
            rust_type(&method.input_type),
            rust_type(&method.output_type),
        );
        let path = format!("/{full_name}/{}", method.proto_name);
        let _ = writeln!(buf, "        /// Calls `{path}`.");
        let _ = match Shape::of(method) {
            Shape::Unary => writeln!(
                buf,
                "        pub fn {name}(&self, request: &{input}) -> Result<{output}, Status> {{ self.inner.unary({path:?}, request) }}"
            ),
            Shape::ServerStreaming => writeln!(
                buf,
                "        pub fn {name}(&self, request: &{input}) -> Result<Responses<{output}>, Status> {{ self.inner.server_streaming({path:?}, request) }}"
            ),
            Shape::ClientStreaming | Shape::BidiStreaming => writeln!(
                buf,
                "        pub fn {name}(&self) -> Result<Streaming<{input}, {output}>, Status> {{ self.inner.streaming({path:?}) }}"
            ),
        };
    }
    let _ = writeln!(buf, "    }}");
    let _ = writeln!(buf, "}}");
}

/// The trait method an author implements for `method`.
fn signature(method: &Method) -> String {
    let (name, input, output) = (
        &method.name,
        rust_type(&method.input_type),
        rust_type(&method.output_type),
    );
    match Shape::of(method) {
        Shape::Unary => {
            format!(
                "fn {name}(&self, cx: &Context<'_>, request: {input}) -> Result<{output}, Status>"
            )
        }
        Shape::ServerStreaming => format!(
            "fn {name}(&self, cx: &Context<'_>, request: {input}, out: &mut Sink<'_, {output}>) -> Result<(), Status>"
        ),
        Shape::ClientStreaming => format!(
            "fn {name}(&self, cx: &Context<'_>, input: Requests<'_, {input}>) -> Result<{output}, Status>"
        ),
        Shape::BidiStreaming => format!(
            "fn {name}(&self, cx: &Context<'_>, input: Requests<'_, {input}>, out: &mut Sink<'_, {output}>) -> Result<(), Status>"
        ),
    }
}

/// `Service::call`: match the short method name, hand the author's method to its shape's
/// adapter.
fn call(buf: &mut String, service: &Service) {
    let _ = writeln!(
        buf,
        "        fn call(&self, cx: &Context<'_>, method: &str) -> Result<(), Status> {{"
    );
    let _ = writeln!(buf, "            match method {{");
    for method in &service.methods {
        let (name, input) = (&method.name, rust_type(&method.input_type));
        // The request type is spelled out; the rest is inferred from the author's method.
        let (adapter, params, args) = match Shape::of(method) {
            Shape::Unary => ("unary", format!("request: {input}"), "request"),
            Shape::ServerStreaming => (
                "server_streaming",
                format!("request: {input}, out"),
                "request, out",
            ),
            Shape::ClientStreaming => ("client_streaming", "input".to_owned(), "input"),
            Shape::BidiStreaming => ("bidi_streaming", "input, out".to_owned(), "input, out"),
        };
        let _ = writeln!(
            buf,
            "                {:?} => ::plugrpc_guest::__private::{adapter}(cx, |{params}| self.0.{name}(cx, {args})),",
            method.proto_name
        );
    }
    let _ = writeln!(
        buf,
        "                other => Err(Status::unimplemented(format!(\"{{}} has no method {{other}}\", self.name()))),"
    );
    let _ = writeln!(buf, "            }}");
    let _ = writeln!(buf, "        }}");
}

/// A prost type path as seen from inside the generated `<service>_server` module.
fn rust_type(ty: &str) -> String {
    if ty == "()" || ty.starts_with("::") {
        ty.to_owned()
    } else {
        format!("super::{ty}")
    }
}

fn doc(buf: &mut String, indent: &str, comments: &[String], fallback: &str) {
    if comments.is_empty() {
        let _ = writeln!(buf, "{indent}/// {fallback}");
    }
    for line in comments.iter().flat_map(|c| c.lines()) {
        let _ = writeln!(
            buf,
            "{indent}///{}",
            if line.is_empty() {
                String::new()
            } else {
                format!(" {line}")
            }
        );
    }
}

fn snake(name: &str) -> String {
    heck::ToSnakeCase::to_snake_case(name)
}
