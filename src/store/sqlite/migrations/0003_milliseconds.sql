-- One time unit everywhere: unix milliseconds. Users and faces already were; keys and tokens
-- were seconds.
UPDATE signing_keys SET created_at = created_at * 1000,
                        retired_at = retired_at * 1000;
UPDATE refresh_tokens SET created_at = created_at * 1000,
                          expires_at = expires_at * 1000,
                          used_at = used_at * 1000,
                          revoked_at = revoked_at * 1000;
UPDATE revoked_access_tokens SET expires_at = expires_at * 1000;
