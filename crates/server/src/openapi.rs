//! The OpenAPI 3.1 document, built from the same calls that register the routes: a route
//! cannot exist without its documentation, nor the other way round.

use std::collections::BTreeMap;

use axum::routing::MethodRouter;
use axum::Router;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::context::ApiContext;

type SchemaFn = fn(&mut SchemaGenerator) -> schemars::Schema;

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    ServerAdmin,
    AnyKey,
    AdminKey,
}

/// The documentation of one operation.
pub struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    access: Access,
    body: Option<SchemaFn>,
    status: u16,
    response: Option<(SchemaFn, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
}

macro_rules! op_ctor {
    ($($name:ident => $method:literal),*) => {
        $(pub fn $name(path: &'static str, summary: &'static str) -> Op {
            Op { method: $method, path, summary, tag: "", access: Access::AnyKey, body: None, status: 200, response: None, query: Vec::new() }
        })*
    };
}

impl Op {
    op_ctor!(get => "get", post => "post", put => "put", patch => "patch", delete => "delete");

    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self
    }

    /// A JSON answer of type `T` with `status`.
    pub fn answers<T: JsonSchema>(mut self, status: u16) -> Self {
        self.status = status;
        self.response = Some((schema_of::<T>, "application/json"));
        self
    }

    /// An answer of another media type (its schema describes one item or the text).
    pub fn answers_as<T: JsonSchema>(mut self, status: u16, media_type: &'static str) -> Self {
        self.status = status;
        self.response = Some((schema_of::<T>, media_type));
        self
    }

    pub fn no_content(mut self) -> Self {
        self.status = 204;
        self.response = None;
        self
    }

    /// A list paged by `cursor` and `limit`.
    pub fn paged(self) -> Self {
        self.query("cursor", "the next page's cursor").query("limit", "1–1000, default 50")
    }

    pub fn query(mut self, name: &'static str, description: &'static str) -> Self {
        self.query.push((name, description));
        self
    }

    fn document(&self, g: &mut SchemaGenerator) -> Value {
        let mut parameters: Vec<Value> = self
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}))
            .collect();
        for (name, description) in &self.query {
            parameters.push(json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}}));
        }
        let mut responses = Map::new();
        let ok = match self.response {
            Some((schema, media)) => json!({"description": "success", "content": {media: {"schema": schema(g)}}}),
            None => json!({"description": "success, no content"}),
        };
        responses.insert(self.status.to_string(), ok);
        responses.insert(
            "default".into(),
            json!({"description": "an error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
        );
        let mut op = json!({
            "summary": self.summary,
            "tags": [self.tag],
            "operationId": format!("{}_{}", self.method, self.path.trim_start_matches('/').replace(['/', '{', '}', '-'], "_")),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(body) = self.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": body(g)}}});
        }
        match self.access {
            Access::Public => op["security"] = json!([]),
            Access::ServerAdmin => op["description"] = json!("Needs the server admin token."),
            Access::AnyKey => op["description"] = json!("Needs an account API key (admin or agent)."),
            Access::AdminKey => op["description"] = json!("Needs an account API key with the admin role."),
        }
        op
    }
}

/// Registers routes and documents them in one step.
pub struct Api {
    router: Router<ApiContext>,
    generator: SchemaGenerator,
    paths: BTreeMap<&'static str, Map<String, Value>>,
}

impl Default for Api {
    fn default() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Api { router: Router::new(), generator: settings.into_generator(), paths: BTreeMap::new() }
    }
}

impl Api {
    pub fn route(mut self, op: Op, handler: MethodRouter<ApiContext>) -> Self {
        let doc = op.document(&mut self.generator);
        self.paths.entry(op.path).or_default().insert(op.method.to_string(), doc);
        self.router = self.router.route(op.path, handler);
        self
    }

    pub fn finish(mut self) -> (Router<ApiContext>, Value) {
        let mut schemas = self.generator.take_definitions(true);
        schemas.insert(
            "Problem".into(),
            json!({
                "type": "object",
                "description": "RFC 9457 problem details with a stable machine `code`.",
                "required": ["type", "title", "status", "detail", "code"],
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "code": {"type": "string"},
                    "field": {"type": "string", "description": "the request field at fault"}
                }
            }),
        );
        let doc = json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Parley",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Omnichannel customer messaging: conversations, messages and the conversation log."
            },
            "servers": [{"url": "/"}],
            "security": [{"bearer": []}],
            "paths": self.paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
            }
        });
        (self.router, doc)
    }
}
