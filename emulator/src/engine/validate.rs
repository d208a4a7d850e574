//! Checks of a call before it reaches the engine's state: sizes, names,
//! parameters, statement ids, SecretArn; and finding a statement by id.

use super::*;

/// Longest SQL text accepted (the Data API's limit is 100 KB).
pub(super) const MAX_SQL_BYTES: usize = 100 * 1024;

/// Longest StatementName accepted.
pub(super) const MAX_STATEMENT_NAME: usize = 500;

impl Engine {
    /// Checks that a SecretArn names a secret of Secrets Manager.
    pub(crate) async fn check_secret(&self, arn: &str) -> Result<(), ApiError> {
        match self
            .outside
            .secrets
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                if not_found {
                    Err(ApiError::validation(format!(
                        "Secrets Manager can't find the specified secret: {arn}"
                    )))
                } else {
                    Err(ApiError::validation(format!(
                        "Cannot read SecretArn {arn} from Secrets Manager ({}); set AWS_ENDPOINT_URL_SECRETS_MANAGER for a local one.",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    )))
                }
            }
        }
    }
}

/// Finds a statement by parent id or sub-statement id (`<id>:N`, batches
/// only); returns it and the sub-statement index.
pub(super) fn find<'a>(
    store: &'a Store,
    id: &str,
) -> Result<(&'a Statement, Option<usize>), ApiError> {
    let parent = id.split_once(':').map_or(id, |(p, _)| p);
    if store.forgotten.contains(parent) {
        return Err(ApiError::not_found(
            "Query does not exist: it ended longer ago than the results are kept, and has expired.",
            id,
        ));
    }
    let not_found = || ApiError::not_found("Query does not exist.", id);
    match id.split_once(':') {
        None => store
            .statements
            .get(id)
            .map(|st| (st, None))
            .ok_or_else(not_found),
        Some((parent, n)) => {
            let st = store.statements.get(parent).ok_or_else(not_found)?;
            let n: usize = n.parse().map_err(|_| not_found())?;
            if !st.req.is_batch || n == 0 || n > st.subs.len() {
                return Err(not_found());
            }
            Ok((st, Some(n - 1)))
        }
    }
}

/// Checks an id against the model's UUID pattern
/// `[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\d{0,2})?`.
pub(super) fn check_id(id: &str) -> Result<(), ApiError> {
    let (uuid, sub) = match id.split_once(':') {
        Some((u, s)) => (u, Some(s)),
        None => (id, None),
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let uuid_ok = groups.len() == 5
        && groups.iter().zip(lens).all(|(g, l)| {
            g.len() == l
                && g.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    let sub_ok = sub.is_none_or(|s| s.len() <= 2 && s.chars().all(|c| c.is_ascii_digit()));
    if uuid_ok && sub_ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{id}' at 'id' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-z0-9]{{8}}(-[a-z0-9]{{4}}){{3}}-[a-z0-9]{{12}}(:\\d{{0,2}})?"
        )))
    }
}

/// Checks what the wire layer cannot: sizes, names and parameters.
pub(super) fn validate_request(req: &ExecRequest) -> Result<(), ApiError> {
    if req.sqls.is_empty() || req.sqls.len() > redrelay_wire::MAX_BATCH_STATEMENTS {
        return Err(ApiError::validation(
            "Sqls must contain between 1 and 40 SQL statements.",
        ));
    }
    for sql in &req.sqls {
        if sql.trim().is_empty() {
            return Err(ApiError::validation("SQL statement must not be empty."));
        }
        if sql.len() > MAX_SQL_BYTES {
            return Err(ApiError::validation(format!(
                "SQL statement is too long: {} bytes, the limit is {MAX_SQL_BYTES}.",
                sql.len()
            )));
        }
    }
    if req
        .statement_name
        .as_ref()
        .is_some_and(|n| n.len() > MAX_STATEMENT_NAME)
    {
        return Err(ApiError::validation(format!(
            "StatementName must be at most {MAX_STATEMENT_NAME} characters."
        )));
    }
    if req.database.as_ref().is_some_and(String::is_empty) {
        return Err(ApiError::validation("Database must not be empty."));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &req.params {
        if !redrelay_wire::valid_param_name(name) {
            return Err(ApiError::validation(format!(
                "Parameter name {name:?} must match [0-9a-zA-Z_]+."
            )));
        }
        if value.is_empty() {
            return Err(ApiError::validation(format!(
                "Parameter {name:?} has an empty value: the Data API takes no empty or NULL parameter values."
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(ApiError::validation(format!(
                "Parameter {name:?} is given more than once."
            )));
        }
    }
    for sql in &req.sqls {
        for name in redrelay_wire::param_names(sql) {
            if !seen.contains(name.as_str()) {
                return Err(ApiError::validation(format!(
                    "The SQL references parameter :{name} but no value was provided for it."
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_model_pattern() {
        assert!(check_id("dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a").is_ok());
        assert!(check_id("dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a:12").is_ok());
        assert!(check_id("dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a:123").is_err());
        assert!(check_id("DD2E1EC9-2ee3-49a0-819f-905fa7d75a4a").is_err());
        assert!(check_id("nope").is_err());
    }
}
