"""aiquery's errors, each carrying a Databricks error class and SQLSTATE in its message.

    AiQueryError
    ├── AnalysisError                     raised on the driver before any request is sent
    │   ├── EndpointNotFoundError         AI_FUNCTION_ENDPOINT_NOT_FOUND
    │   ├── InvalidArgumentError          UNRECOGNIZED_PARAMETER_NAME, AI_FUNCTION_INVALID_ARGUMENT, ...
    │   ├── InvalidModelParametersError   AI_FUNCTION_INVALID_MODEL_PARAMETERS.<SUBCLASS>
    │   ├── UnsupportedResponseFormatError AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT
    │   └── InvalidReturnTypeError        AI_FUNCTION_INVALID_RETURN_TYPE
    ├── ConfigError                       a bad endpoints file, environment or request tags
    └── RequestError                      AI_FUNCTION_HTTP_REQUEST_ERROR: a row's request failed for good
        └── ParseCastError                AI_FUNCTION_HTTP_PARSE_CAST_ERROR: the answer does not fit returnType

Messages name the endpoint, HTTP status, the server's (truncated) message and the number
of attempts; never the prompt, the answer or a token.
"""

from __future__ import annotations


class AiQueryError(Exception):
    """Base of every error aiquery raises on purpose."""

    error_class = "AI_FUNCTION_ERROR"
    sqlstate = "22000"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"[{self.error_class}] {detail} SQLSTATE: {self.sqlstate}")


class AnalysisError(AiQueryError):
    error_class = "AI_FUNCTION_INVALID_ARGUMENT"
    sqlstate = "22023"

    def __init__(self, detail: str, *, error_class: str | None = None) -> None:
        if error_class is not None:
            self.error_class = error_class
        super().__init__(detail)


class EndpointNotFoundError(AnalysisError):
    error_class = "AI_FUNCTION_ENDPOINT_NOT_FOUND"
    sqlstate = "42704"


class InvalidArgumentError(AnalysisError):
    pass


class InvalidModelParametersError(AnalysisError):
    sqlstate = "22023"

    def __init__(self, subclass: str, detail: str) -> None:
        super().__init__(detail, error_class=f"AI_FUNCTION_INVALID_MODEL_PARAMETERS.{subclass}")


class UnsupportedResponseFormatError(AnalysisError):
    error_class = "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT"
    sqlstate = "0A000"


class InvalidReturnTypeError(AnalysisError):
    error_class = "AI_FUNCTION_INVALID_RETURN_TYPE"
    sqlstate = "42K09"


class ConfigError(AiQueryError):
    error_class = "AIQUERY_CONFIG_ERROR"
    sqlstate = "42000"


class RequestError(AiQueryError):
    """A request that failed for good: terminal status, or retries exhausted."""

    error_class = "AI_FUNCTION_HTTP_REQUEST_ERROR"
    sqlstate = "08000"

    def __init__(
        self,
        endpoint: str,
        reason: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        function: str = "ai_query",
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.request_id = request_id
        self.attempts = attempts
        self.reason = reason
        self.function = function
        parts = [f"endpoint '{endpoint}'"]
        if status is not None:
            parts.append(f"HTTP {status}")
        parts.append(f"{attempts} attempt{'s' if attempts != 1 else ''}")
        if request_id:
            parts.append(f"request id {request_id}")
        super().__init__(
            f"Error occurred while making an HTTP request for function {function}: "
            f"{reason} ({', '.join(parts)})."
        )

    def for_function(self, function: str) -> RequestError:
        """The same failure, said of the AI function (ai_classify, ...) that sent it."""
        if function == self.function:
            return self
        return RequestError(
            self.endpoint,
            self.reason,
            status=self.status,
            request_id=self.request_id,
            attempts=self.attempts,
            function=function,
        )


class ParseCastError(RequestError):
    error_class = "AI_FUNCTION_HTTP_PARSE_CAST_ERROR"
    sqlstate = "2203G"

    def __init__(
        self,
        endpoint: str,
        reason: str,
        *,
        request_id: str | None = None,
        function: str = "ai_query",
    ) -> None:
        RequestError.__init__(self, endpoint, reason, request_id=request_id, function=function)
        into = "returnType" if function == "ai_query" else f"the result of {function}"
        self.detail = (
            f"Failed to parse the model answer into {into}: {reason} (endpoint '{endpoint}')."
        )
        Exception.__init__(self, f"[{self.error_class}] {self.detail} SQLSTATE: {self.sqlstate}")

    def for_function(self, function: str) -> RequestError:
        return (
            self
            if function == self.function
            else ParseCastError(
                self.endpoint, self.reason, request_id=self.request_id, function=function
            )
        )


def truncate(text: str, limit: int = 300) -> str:
    """A server message shortened for an error text."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
