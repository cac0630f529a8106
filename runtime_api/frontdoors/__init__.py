"""HTTP front doors of functions, as AWS puts them there: Function URLs and API Gateway's HTTP and
REST APIs (runtime_api/frontdoors/gateway.py serves them; the rest of the package is pure).

    model.py       what a front door is (FunctionUrl, Api, Route, authorizers, Cors), one Struct each
    directory.py   which door, and which route, a request is for (router.py: API Gateway's matching)
    events.py      the request as the function's event: payload format 2.0 and 1.0
    responses.py   the function's result as the HTTP response; the services' own refusals
    authorizers.py Lambda, JWT and IAM authorizers' decisions; cors.py: CORS
    gateway.py     the trio shell: listeners, invoking through the Server, streaming
"""
