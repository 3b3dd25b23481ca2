"""The web console under ``/console/`` on the admin address: the trail, the incidents, the
reports and the policy for auditors and analysts, as server-rendered pages (docs/console.md)."""
