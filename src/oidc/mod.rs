//! OpenID Connect: Face Lock as the identity provider applications send their users to.
//! [`clients`] is the registry of those applications, [`request`] checks what one asks for at
//! `/authorize`, [`pkce`] binds its code to its secret.

pub mod clients;
pub mod pkce;
pub mod request;

pub use clients::{Client, ClientError, ClientId, ClientSecret, Clients, NewClient, RedirectUri};
pub use request::{AuthorizationRequest, AuthorizeError, AuthorizeParams, Redirect};
