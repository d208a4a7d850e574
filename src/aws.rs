//! The AWS configuration, from the standard chain only: environment
//! (AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, ...), profiles,
//! SSO, instance and container roles. redrelay adds no flags of its own for
//! what AWS already names.

use anyhow::{bail, Result};
use aws_config::BehaviorVersion;

pub async fn sdk_config() -> Result<aws_config::SdkConfig> {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    if sdk.region().is_none() {
        bail!("no AWS region is configured: set AWS_REGION (or a region in your AWS profile)");
    }
    Ok(sdk)
}
