//! `plugrpc new`: a plugin crate, written anywhere, from one `.proto` file: its manifest
//! (a `cdylib` on this SDK, a workspace of its own), the proto, the `build.rs`, a handler
//! per service whose every method answers UNIMPLEMENTED, and a test that runs on the
//! build machine. It writes only into a folder that is new or empty.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use heck::{ToSnakeCase as _, ToUpperCamelCase as _};
use prost_types::{FileDescriptorProto, MethodDescriptorProto};

/// The prost the SDK is built on; a plugin's messages must derive the same one.
const PROST: &str = "0.14";

/// Names cargo refuses for a package (they shadow the standard crates).
const RESERVED_NAMES: [&str; 6] = ["test", "std", "core", "alloc", "proc_macro", "build"];

/// Where the generated crate takes the SDK (`plugrpc-guest`, `plugrpc-build`) from.
#[derive(Clone, Debug)]
pub enum Sdk {
    /// A folder holding both crates (a checkout's `guest-sdk`).
    Path(PathBuf),
    /// A git repository holding both crates.
    Git(String),
}

impl Sdk {
    /// The SDK of the checkout this binary was built from, if it is still there: what a
    /// developer of this repo wants by default.
    pub fn built_from() -> Option<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        dir.join("plugrpc-guest/Cargo.toml")
            .is_file()
            .then(|| Self::Path(dir.canonicalize().unwrap_or(dir)))
    }

    /// The dependency entry of `krate` from this source, as TOML.
    fn dependency(&self, krate: &str) -> String {
        match self {
            Self::Path(dir) => format!(
                "{{ path = {} }}",
                toml::Value::String(dir.join(krate).display().to_string())
            ),
            Self::Git(url) => format!("{{ git = {} }}", toml::Value::String(url.clone())),
        }
    }
}

/// What to create.
#[derive(Debug)]
pub struct NewPlugin<'a> {
    /// The crate's (and so the plugin's) name.
    pub name: &'a str,
    /// The `.proto` file it serves; it may import only `google/protobuf/*`.
    pub proto: &'a Path,
    /// The folder to write the crate into: new, or empty.
    pub dir: &'a Path,
    /// Where its SDK dependencies come from.
    pub sdk: Sdk,
}

/// Why no crate was written (nothing is written when any check fails).
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name cannot be a plugin crate's.
    #[error(
        "{0:?} is not a plugin name: use lowercase letters, digits, '-' and '_', starting with a letter (and not a name of Rust's own crates)"
    )]
    BadName(String),
    /// The target folder holds something already.
    #[error("{} exists and is not empty: choose a new folder with --dir", .0.display())]
    NotEmpty(PathBuf),
    /// The proto does not compile.
    #[error("{}: {source}", .file.display())]
    Proto {
        /// The file.
        file: PathBuf,
        /// Why (file, line and column).
        source: Box<protox::Error>,
    },
    /// The proto imports a file that would not be copied with it.
    #[error(
        "{}: imports {import}; plugrpc new copies one .proto, which may import only google/protobuf/*",
        .file.display()
    )]
    Import {
        /// The file.
        file: PathBuf,
        /// The import.
        import: String,
    },
    /// The proto has no package (the SDK includes generated code by package).
    #[error("{}: declares no package; add `package <name>;`", .0.display())]
    NoPackage(PathBuf),
    /// The proto has no service to serve.
    #[error("{}: declares no service: a plugin serves at least one", .0.display())]
    NoService(PathBuf),
    /// The SDK folder does not hold the SDK.
    #[error("{}: no plugrpc-guest/Cargo.toml there (--sdk-path is the folder holding plugrpc-guest and plugrpc-build)", .0.display())]
    NotSdk(PathBuf),
    /// Writing the crate failed.
    #[error("writing {}: {source}", .path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes the crate `plugin` describes; the files written, relative to its folder.
pub fn create(plugin: &NewPlugin<'_>) -> Result<Vec<PathBuf>, NewError> {
    if !is_crate_name(plugin.name) {
        return Err(NewError::BadName(plugin.name.to_owned()));
    }
    if let Sdk::Path(dir) = &plugin.sdk
        && !dir.join("plugrpc-guest/Cargo.toml").is_file()
    {
        return Err(NewError::NotSdk(dir.clone()));
    }
    let proto_name = plugin
        .proto
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let proto = parse(plugin.proto, &proto_name)?;
    if std::fs::read_dir(plugin.dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(NewError::NotEmpty(plugin.dir.to_owned()));
    }
    let files = [
        (PathBuf::from("Cargo.toml"), cargo_toml(plugin)),
        (PathBuf::from("build.rs"), build_rs(&proto_name)),
        (PathBuf::from("src/lib.rs"), lib_rs(plugin.name, &proto)),
        (PathBuf::from(".gitignore"), "/target\n".to_owned()),
        (
            Path::new("proto").join(&proto_name),
            std::fs::read_to_string(plugin.proto).map_err(|source| NewError::Write {
                path: plugin.proto.to_owned(),
                source,
            })?,
        ),
    ];
    for (relative, text) in &files {
        let path = plugin.dir.join(relative);
        let write = || {
            std::fs::create_dir_all(path.parent().unwrap_or(plugin.dir))?;
            std::fs::write(&path, text)
        };
        write().map_err(|source| NewError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files.into_iter().map(|(relative, _)| relative).collect())
}

/// Cargo's rules for a package name, narrowed to what reads well as a plugin's name (a
/// `[plugins.<name>]` key, a `<name>.wasm` file).
fn is_crate_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
        && !RESERVED_NAMES.contains(&name.replace('-', "_").as_str())
}

/// The proto at `path` compiled (imports resolved beside it and from protox's
/// well-known types), checked to be one self-contained file with a package and services.
fn parse(path: &Path, name: &str) -> Result<FileDescriptorProto, NewError> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    let compiled = protox::Compiler::new([dir.unwrap_or(Path::new("."))])
        .and_then(|mut compiler| {
            compiler.open_file(name)?;
            Ok(compiler.file_descriptor_set())
        })
        .map_err(|source| NewError::Proto {
            file: path.to_owned(),
            source: Box::new(source),
        })?;
    let proto = compiled
        .file
        .into_iter()
        .find(|file| file.name() == name)
        .ok_or_else(|| NewError::NoService(path.to_owned()))?;
    if let Some(import) = proto
        .dependency
        .iter()
        .find(|import| !import.starts_with("google/protobuf/"))
    {
        return Err(NewError::Import {
            file: path.to_owned(),
            import: import.clone(),
        });
    }
    if proto.package().is_empty() {
        return Err(NewError::NoPackage(path.to_owned()));
    }
    if proto.service.is_empty() {
        return Err(NewError::NoService(path.to_owned()));
    }
    Ok(proto)
}

fn cargo_toml(plugin: &NewPlugin<'_>) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A plugin is a component: `cargo build --target wasm32-wasip2 --release`.
[lib]
crate-type = ["cdylib"]

[dependencies]
plugrpc-guest = {guest}
prost = "{PROST}"
prost-types = "{PROST}"

[build-dependencies]
plugrpc-build = {build}

# A workspace of its own: it builds wherever it sits.
[workspace]
"#,
        name = plugin.name,
        guest = plugin.sdk.dependency("plugrpc-guest"),
        build = plugin.sdk.dependency("plugrpc-build"),
    )
}

fn build_rs(proto_name: &str) -> String {
    format!(
        r#"//! Generates the messages, one trait per service and its server from proto/.
fn main() {{
    plugrpc_build::compile(&["proto/{proto_name}"], &["proto"]).expect("proto/{proto_name} compiles");
}}
"#
    )
}

/// The Rust type prost generates for the message `full` (`.package.Outer.Inner`), from
/// the crate's root where the package is included.
fn rust_type(package: &str, full: &str) -> String {
    let full = full.trim_start_matches('.');
    if full == "google.protobuf.Empty" {
        return "()".to_owned();
    }
    if let Some(well_known) = full.strip_prefix("google.protobuf.") {
        return format!("::prost_types::{well_known}");
    }
    let local = full
        .strip_prefix(package)
        .map_or(full, |rest| rest.trim_start_matches('.'));
    let mut parts: Vec<String> = local.split('.').map(str::to_owned).collect();
    let last = rust_ident(parts.pop().unwrap_or_default().to_upper_camel_case());
    parts
        .iter()
        .map(|outer| rust_ident(outer.to_snake_case()))
        .chain([last])
        .collect::<Vec<_>>()
        .join("::")
}

/// `name` as prost-build makes it an identifier, so the stubs match the generated traits:
/// a keyword raw (`r#match`), one that cannot be raw suffixed (`self_`), a leading digit
/// prefixed.
fn rust_ident(name: String) -> String {
    match name.as_str() {
        "as" | "break" | "const" | "continue" | "else" | "enum" | "false" | "fn" | "for" | "if"
        | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move" | "mut" | "pub" | "ref"
        | "return" | "static" | "struct" | "trait" | "true" | "type" | "unsafe" | "use"
        | "where" | "while" | "dyn" | "abstract" | "become" | "box" | "do" | "final" | "macro"
        | "override" | "priv" | "typeof" | "unsized" | "virtual" | "yield" | "async" | "await"
        | "try" | "gen" => format!("r#{name}"),
        "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{name}_"),
        _ if name.starts_with(|c: char| c.is_ascii_digit()) => format!("_{name}"),
        _ => name,
    }
}

/// The trait method for `method`, answering UNIMPLEMENTED.
fn method_stub(text: &mut String, package: &str, path: &str, method: &MethodDescriptorProto) {
    let name = rust_ident(method.name().to_snake_case());
    let input = rust_type(package, method.input_type());
    let output = rust_type(package, method.output_type());
    let signature = match (method.client_streaming(), method.server_streaming()) {
        (false, false) => format!(
            "fn {name}(&self, _cx: &Context<'_>, _request: {input}) -> Result<{output}, Status>"
        ),
        (false, true) => format!(
            "fn {name}(\n        &self,\n        _cx: &Context<'_>,\n        _request: {input},\n        _out: &mut Sink<'_, {output}>,\n    ) -> Result<(), Status>"
        ),
        (true, false) => format!(
            "fn {name}(\n        &self,\n        _cx: &Context<'_>,\n        _input: Requests<'_, {input}>,\n    ) -> Result<{output}, Status>"
        ),
        (true, true) => format!(
            "fn {name}(\n        &self,\n        _cx: &Context<'_>,\n        _input: Requests<'_, {input}>,\n        _out: &mut Sink<'_, {output}>,\n    ) -> Result<(), Status>"
        ),
    };
    let _ = writeln!(text, "    {signature} {{");
    let _ = writeln!(
        text,
        "        Err(Status::unimplemented(\"{path}/{} is not written yet\"))",
        method.name()
    );
    let _ = writeln!(text, "    }}");
}

fn lib_rs(name: &str, proto: &FileDescriptorProto) -> String {
    let package = proto.package();
    let handler = format!("{}Plugin", name.to_upper_camel_case());
    let methods = || proto.service.iter().flat_map(|s| s.method.iter());
    let mut sdk = vec!["Context", "Status"];
    if methods().any(|m| m.client_streaming()) {
        sdk.push("Requests");
    }
    if methods().any(|m| m.server_streaming()) {
        sdk.push("Sink");
    }
    let services: Vec<(String, String, String)> = proto
        .service
        .iter()
        .map(|service| {
            let trait_name = rust_ident(service.name().to_upper_camel_case());
            let module = format!("{}_server", trait_name.to_snake_case());
            (format!("{package}.{}", service.name()), trait_name, module)
        })
        .collect();
    let servers: Vec<String> = services
        .iter()
        .map(|(_, trait_name, _)| format!("{trait_name}Server<{handler}>"))
        .collect();

    let mut text = String::new();
    let _ = writeln!(
        text,
        "//! The `{name}` plugin: serves {}. Every method answers UNIMPLEMENTED until it is written.\n",
        services
            .iter()
            .map(|(full, _, _)| format!("`{full}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(text, "plugrpc_guest::include_proto!(\"{package}\");\n");
    let _ = writeln!(text, "use plugrpc_guest::{{{}}};", sdk.join(", "));
    for (_, trait_name, module) in &services {
        let _ = writeln!(text, "use {module}::{{{trait_name}, {trait_name}Server}};");
    }
    let _ = writeln!(
        text,
        "\n/// The handlers of every service of the proto.\n#[derive(Default)]\nstruct {handler};"
    );
    for (service, (full, trait_name, _)) in proto.service.iter().zip(&services) {
        let _ = writeln!(text, "\nimpl {trait_name} for {handler} {{");
        for (i, method) in service.method.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            method_stub(&mut text, package, full, method);
        }
        let _ = writeln!(text, "}}");
    }
    let _ = writeln!(
        text,
        "\n// `export!(stateless: ...)` lets the host serve calls from a reused instance (much cheaper)\n// once no call depends on what an earlier one left behind.\nplugrpc_guest::export!({});",
        servers.join(", ")
    );
    let expected: Vec<String> = proto
        .service
        .iter()
        .zip(&services)
        .flat_map(|(service, (full, _, _))| {
            service
                .method
                .iter()
                .map(move |method| format!("{:?}", format!("{full}/{}", method.name())))
        })
        .collect();
    let (_, first_trait, first_module) = &services[0];
    let _ = write!(
        text,
        r#"
#[cfg(test)]
mod tests {{
    use prost::Message as _;

    /// The descriptor the plugin hands the host declares every method of the proto.
    #[test]
    fn the_descriptor_declares_every_method() {{
        let set = prost_types::FileDescriptorSet::decode(
            super::{first_module}::{first_trait}Server::<super::{handler}>::FILE_DESCRIPTOR_SET,
        )
        .expect("the descriptor decodes");
        let mut methods = Vec::new();
        for file in set.file.iter().filter(|file| file.package() == "{package}") {{
            for service in &file.service {{
                for method in &service.method {{
                    methods.push(format!("{{}}.{{}}/{{}}", file.package(), service.name(), method.name()));
                }}
            }}
        }}
        assert_eq!(methods, [{}]);
    }}
}}
"#,
        expected.join(", ")
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_are_named_as_prost_generates_them() {
        assert_eq!(rust_type("a.v1", ".a.v1.GetUser"), "GetUser");
        assert_eq!(
            rust_type("a.v1", ".a.v1.Outer.inner_msg"),
            "outer::InnerMsg"
        );
        assert_eq!(rust_type("a.v1", ".a.v1.Match.Arm"), "r#match::Arm");
        assert_eq!(rust_type("a.v1", ".google.protobuf.Empty"), "()");
        assert_eq!(
            rust_type("a.v1", ".google.protobuf.Timestamp"),
            "::prost_types::Timestamp"
        );
    }

    #[test]
    fn plugin_names_are_crate_names_that_read_as_config_keys() {
        for good in ["billing", "user-directory", "v2_users"] {
            assert!(is_crate_name(good), "{good}");
        }
        for bad in ["", "Users", "2fa", "a b", "-x", "test", "std", "../x"] {
            assert!(!is_crate_name(bad), "{bad}");
        }
    }
}
