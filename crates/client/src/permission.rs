//! The agent's signed reports of permissions beyond the scope: a change of
//! what the user allows, and each clipboard transfer (metadata only).

use assent_proto::files::FileReport;
use assent_proto::identity;
use assent_proto::permission::{ClipboardReport, Direction, Permission, PermissionReport};
use assent_proto::wire::ClientMsg;

use crate::{ClientError, Control, ScopeReporter};

impl ScopeReporter {
    /// Tells the relay, with a receipt signed by the device key, that the
    /// user turned `permission` on or off (recorded as `permission_changed`).
    pub async fn report_permission(
        &mut self,
        control: &mut Control,
        permission: Permission,
        allowed: bool,
    ) -> Result<(), ClientError> {
        self.permission_changes = self.permission_changes.saturating_add(1);
        let change = self.permission_changes;
        let payload = identity::permission_payload(&self.offer_bytes, change, permission, allowed);
        let report = PermissionReport {
            permission,
            allowed,
            change,
            receipt: self.device_key.sign(&payload),
        };
        control.send(&ClientMsg::PermissionChanged(report)).await
    }

    /// Tells the relay, with a receipt signed by the device key, that
    /// clipboard text of `bytes` bytes and this SHA-256 moved `direction`
    /// (recorded as `clipboard_transfer`). The text itself is not sent.
    pub async fn report_clipboard(
        &mut self,
        control: &mut Control,
        direction: Direction,
        bytes: u64,
        sha256: [u8; 32],
    ) -> Result<(), ClientError> {
        self.transfers = self.transfers.saturating_add(1);
        let number = self.transfers;
        let payload =
            identity::clipboard_payload(&self.offer_bytes, number, direction, bytes, &sha256);
        let report = ClipboardReport {
            number,
            direction,
            bytes,
            sha256,
            receipt: self.device_key.sign(&payload),
        };
        control.send(&ClientMsg::ClipboardTransfer(report)).await
    }

    /// Tells the relay, with a receipt signed by the device key, how a file
    /// transfer ended (recorded as `file_transfer`). `report.number` and
    /// `report.receipt` are filled in here.
    pub async fn report_file(
        &mut self,
        control: &mut Control,
        mut report: FileReport,
    ) -> Result<(), ClientError> {
        self.files = self.files.saturating_add(1);
        report.number = self.files;
        report.receipt = self
            .device_key
            .sign(&identity::file_payload(&self.offer_bytes, &report));
        control.send(&ClientMsg::FileTransfer(report)).await
    }
}
