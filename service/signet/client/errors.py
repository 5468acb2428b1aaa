"""What the client raises."""

from __future__ import annotations

from signet.api.protocol import Problem


class SignetError(Exception):
    """A request that failed: ``status`` and ``problem`` (the service's RFC 9457 body) when
    the service answered, both None when it could not be reached."""

    def __init__(self, message: str, status: int | None = None, problem: Problem | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem

    @classmethod
    def of(cls, problem: Problem) -> SignetError:
        return cls(problem_line(problem), problem.status, problem)

    @property
    def field(self) -> str | None:
        """The request field the service blamed, where it named one."""
        return self.problem.field if self.problem else None


def problem_line(problem: Problem) -> str:
    """``413 Content Too Large: text is 100,001 characters; the limit is 100,000 (field: text)``"""
    line = f"{problem.status} {problem.title}: {problem.detail}"
    return f"{line} (field: {problem.field})" if problem.field else line
