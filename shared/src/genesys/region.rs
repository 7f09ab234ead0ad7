//! Genesys Cloud regions: key → domain; the API host is `api.<domain>`, the login host
//! `login.<domain>` (PY `purecloud_region_hosts.py`, JS `PureCloudRegionHosts.js`,
//! reference §4).

/// `(region key, domain)` of every public Genesys Cloud region, plus the EU sovereign cloud.
pub const REGIONS: &[(&str, &str)] = &[
    ("us_east_1", "mypurecloud.com"),
    ("us_east_2", "use2.us-gov-pure.cloud"),
    ("us_west_2", "usw2.pure.cloud"),
    ("ca_central_1", "cac1.pure.cloud"),
    ("sa_east_1", "sae1.pure.cloud"),
    ("mx_central_1", "mxc1.pure.cloud"),
    ("eu_west_1", "mypurecloud.ie"),
    ("eu_west_2", "euw2.pure.cloud"),
    ("eu_central_1", "mypurecloud.de"),
    ("eu_central_2", "euc2.pure.cloud"),
    ("me_central_1", "mec1.pure.cloud"),
    ("ap_south_1", "aps1.pure.cloud"),
    ("ap_northeast_1", "mypurecloud.jp"),
    ("ap_northeast_2", "apne2.pure.cloud"),
    ("ap_northeast_3", "apne3.pure.cloud"),
    ("ap_southeast_2", "mypurecloud.com.au"),
    ("ap_southeast_1", "apse1.pure.cloud"),
    ("eusc_de_east_1", "edee1.eusc-pure.cloud"),
];

/// Resolves a region given as a key (`us_east_1`, `us-east-1`) or a domain
/// (`mypurecloud.com`, `apse1.pure.cloud`) to its domain. `None` for unknown regions.
pub fn region_domain(region: &str) -> Option<&'static str> {
    let key = region.trim().to_ascii_lowercase().replace('-', "_");
    let domain = region.trim().to_ascii_lowercase();
    REGIONS
        .iter()
        .find(|(k, d)| *k == key || *d == domain)
        .map(|(_, d)| *d)
}

/// `https://api.<domain>` for a region domain.
pub fn api_base_url(domain: &str) -> String {
    format!("https://api.{domain}")
}

/// `https://login.<domain>` for a region domain.
pub fn login_base_url(domain: &str) -> String {
    format!("https://login.{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_keys_and_domains() {
        assert_eq!(region_domain("ap_southeast_1"), Some("apse1.pure.cloud"));
        assert_eq!(region_domain("ap-southeast-1"), Some("apse1.pure.cloud"));
        assert_eq!(region_domain("mypurecloud.ie"), Some("mypurecloud.ie"));
        assert_eq!(region_domain("EU_WEST_2"), Some("euw2.pure.cloud"));
        assert_eq!(region_domain("mars_1"), None);
        assert_eq!(REGIONS.len(), 18);
    }
}
