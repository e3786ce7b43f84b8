//! Emits, per protobuf service, the trait plugin authors implement and the server that
//! decodes requests, calls the trait and encodes replies.

use std::fmt::Write as _;

use prost_build::{Method, Service, ServiceGenerator};

pub(crate) struct ServiceGen;

/// The four gRPC call shapes, as the descriptor declares them.
#[derive(Clone, Copy, PartialEq)]
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
            "    #![allow(unused_imports, unused_variables, clippy::all)]"
        );
        let _ = writeln!(buf, "    use ::plugrpc_guest::prost::Message as _;");
        let _ = writeln!(
            buf,
            "    use ::plugrpc_guest::{{Context, Requests, Sink, Status}};"
        );
        let _ = writeln!(
            buf,
            "    use ::plugrpc_guest::__private::{{RawRequests, RawSink}};"
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
            crate::DESCRIPTOR_FILE
        );
        dispatch(
            buf,
            &service,
            Shape::Unary,
            "fn unary(&self, cx: &Context, method: &str, request: &[u8]) -> Result<Vec<u8>, Status>",
        );
        dispatch(
            buf,
            &service,
            Shape::ServerStreaming,
            "fn server_streaming(&self, cx: &Context, method: &str, request: &[u8], out: RawSink<'_>) -> Result<(), Status>",
        );
        dispatch(
            buf,
            &service,
            Shape::ClientStreaming,
            "fn client_streaming(&self, cx: &Context, method: &str, input: RawRequests<'_>) -> Result<Vec<u8>, Status>",
        );
        dispatch(
            buf,
            &service,
            Shape::BidiStreaming,
            "fn bidi_streaming(&self, cx: &Context, method: &str, input: RawRequests<'_>, out: RawSink<'_>) -> Result<(), Status>",
        );
        let _ = writeln!(buf, "    }}");
        let _ = writeln!(buf, "}}");
    }
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
            format!("fn {name}(&self, cx: &Context, request: {input}) -> Result<{output}, Status>")
        }
        Shape::ServerStreaming => format!(
            "fn {name}(&self, cx: &Context, request: {input}, out: &mut Sink<'_, {output}>) -> Result<(), Status>"
        ),
        Shape::ClientStreaming => format!(
            "fn {name}(&self, cx: &Context, input: Requests<'_, {input}>) -> Result<{output}, Status>"
        ),
        Shape::BidiStreaming => format!(
            "fn {name}(&self, cx: &Context, input: Requests<'_, {input}>, out: &mut Sink<'_, {output}>) -> Result<(), Status>"
        ),
    }
}

/// One `Service` method: match the short method name, decode, call, encode.
fn dispatch(buf: &mut String, service: &Service, shape: Shape, header: &str) {
    let _ = writeln!(buf, "        {header} {{");
    let _ = writeln!(buf, "            match method {{");
    for method in service.methods.iter().filter(|m| Shape::of(m) == shape) {
        let (name, input) = (&method.name, rust_type(&method.input_type));
        let call = match shape {
            Shape::Unary => {
                format!("Ok(self.0.{name}(cx, <{input}>::decode(request)?)?.encode_to_vec())")
            }
            Shape::ServerStreaming => {
                format!("self.0.{name}(cx, <{input}>::decode(request)?, &mut Sink::new(out))")
            }
            Shape::ClientStreaming => {
                format!("Ok(self.0.{name}(cx, Requests::new(input))?.encode_to_vec())")
            }
            Shape::BidiStreaming => {
                format!("self.0.{name}(cx, Requests::new(input), &mut Sink::new(out))")
            }
        };
        let _ = writeln!(buf, "                {:?} => {call},", method.proto_name);
    }
    let kind = match shape {
        Shape::Unary => "unary",
        Shape::ServerStreaming => "server-streaming",
        Shape::ClientStreaming => "client-streaming",
        Shape::BidiStreaming => "bidi-streaming",
    };
    let _ = writeln!(
        buf,
        "                other => Err(Status::unimplemented(format!(\"{{}}/{{other}} is not a {kind} method here\", self.name()))),"
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
