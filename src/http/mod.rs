//! The HTTP transport: warp filters for the routes, whose handlers call [`People`](crate::people)
//! alone; bodies read within their limits; replies rendered; and the server that accepts
//! connections, refuses what must not reach warp, contains a connection's panic and drains at
//! shutdown. It knows nothing of the database or the mirror behind the people.

mod body;
mod refuse;
mod reply;
mod routes;
mod server;

pub use routes::{AppState, api};
pub(crate) use server::Server;
pub use server::contain_connection_panics;
