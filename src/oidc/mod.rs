//! OpenID Connect: Face Lock as the identity provider applications send their users to.
//! [`clients`] is the registry of those applications.

pub mod clients;

pub use clients::{Client, ClientError, ClientId, ClientSecret, Clients, NewClient, RedirectUri};
