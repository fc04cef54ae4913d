"""Bot pull requests: one per bot branch, created once and then kept up to date (a newer bump supersedes)."""
from __future__ import annotations

from core.adapters.azdo import AzdoGateway


class PullRequests:
    def __init__(self, gateway: AzdoGateway, repository: str):
        self.gateway = gateway
        self.repository = repository

    def open_or_update(self, source_branch: str, target_branch: str, title: str, description: str) -> int:
        """The id of the active PR for this bot branch, created when there is none (so a retry after a crash
        between push and PR creation still yields exactly one PR)."""
        source, target = f"refs/heads/{source_branch}", f"refs/heads/{target_branch}"
        pr = self.gateway.find_active_pr(self.repository, source, target)
        if pr is None:
            return self.gateway.create_pr(self.repository, source, target, title, description).id
        if pr.title != title or pr.description != description[:4000]:
            self.gateway.update_pr_text(self.repository, pr.id, title, description)
        return pr.id
