//! The raw event feed for auditors: one stream's events, and `$all` from a position, paged,
//! in an EventStoreDB-like shape, each event with its hash and its predecessor's.

use actix_web::{HttpRequest, HttpResponse, get, web};
use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, Position, ReadDirection, StreamId};
use serde::Deserialize;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::event_feed::FeedEvent;
use crate::problem::{ApiError, ProblemDocument};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AllQuery {
    /// Events strictly after this position (0: from the start).
    #[serde(default)]
    after: u64,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// A page of `$all`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EventPage<'a> {
    pub events: Vec<FeedEvent<'a>>,
    /// Pass as `after` to continue.
    pub next_after: u64,
    /// More events may follow this page.
    pub more_pending: bool,
}

/// A page of one stream.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StreamPage<'a> {
    pub stream_id: &'a str,
    /// The stream's current version (also its ETag).
    pub version: u64,
    pub events: Vec<FeedEvent<'a>>,
}

fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::bad_field("limit", format!("must be between 1 and {MAX_PAGE}, not {limit}"))),
    }
}

/// `GET /api/v1/events?after=&limit=`: a page of `$all`. `next_after` continues it.
#[utoipa::path(
    tag = "audit",
    params(AllQuery),
    responses(
        (status = 200, description = "A page of $all in position order", body = EventPage),
        (status = 400, description = "A malformed parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not read the feed", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
#[get("/events")]
pub async fn all_events(
    request: HttpRequest,
    principal: Principal,
    store: web::Data<PostgresEventStore>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadEventFeed)?;
    let query: AllQuery = super::query(&request)?;
    let limit = page_size(query.limit)?;
    // The store waits briefly for events held back behind older running transactions.
    let slice = store.read_all(Position(query.after), limit).await?;
    let next_after = slice.events.last().map_or(query.after, |event| event.position.0);
    let links = store.chain_links(&slice.events).await?;
    let events: Vec<FeedEvent<'_>> =
        slice.events.iter().zip(&links).map(|(event, link)| FeedEvent::chained(event, link)).collect();
    let more_pending = slice.held_back || events.len() == limit;
    Ok(HttpResponse::Ok().json(EventPage { events, next_after, more_pending }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// First event number to read (inclusive); default the start (forward) or end (backward).
    from: Option<u64>,
    /// `forward` (default) or `backward`.
    #[serde(default)]
    #[param(inline)]
    direction: Direction,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Direction {
    #[default]
    Forward,
    Backward,
}

/// `GET /api/v1/streams/{stream_id}?from=&direction=&limit=`: a page of one stream.
#[utoipa::path(
    tag = "audit",
    params(("stream_id" = String, Path, description = "A stream such as application-… or budget-2025-26"), StreamQuery),
    responses(
        (status = 200, description = "A page of the stream", body = StreamPage, headers(("ETag" = String, description = "The stream's version"))),
        (status = 400, description = "A malformed parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not read the feed", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "The stream has no events", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
#[get("/streams/{stream_id}")]
pub async fn stream_events(
    request: HttpRequest,
    path: web::Path<String>,
    principal: Principal,
    store: web::Data<PostgresEventStore>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadEventFeed)?;
    let stream =
        StreamId::parse(path.into_inner()).map_err(|error| ApiError::bad_field("stream_id", error.to_string()))?;
    let query: StreamQuery = super::query(&request)?;
    let limit = page_size(query.limit)?;
    let Some(version) = store.stream_version(&stream).await? else {
        return Err(ApiError::NotFound(format!("stream {stream} has no events")));
    };
    let direction = match query.direction {
        Direction::Forward => ReadDirection::Forward,
        Direction::Backward => ReadDirection::Backward,
    };
    let events = store.read_stream(&stream, query.from, direction, limit).await?;
    let links = store.chain_links(&events).await?;
    let feed: Vec<FeedEvent<'_>> =
        events.iter().zip(&links).map(|(event, link)| FeedEvent::chained(event, link)).collect();
    Ok(HttpResponse::Ok().insert_header(("ETag", format!("\"{version}\""))).json(StreamPage {
        stream_id: stream.as_str(),
        version,
        events: feed,
    }))
}
