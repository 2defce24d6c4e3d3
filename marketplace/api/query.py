"""Query strings PostgreSQL could not take: answered 400 before any view sees them."""

from django.http import JsonResponse

from marketplace.api.exceptions import PROBLEM_CONTENT_TYPE, problem


class RefuseNulInQueryMiddleware:
    """A NUL character cannot be stored in or compared with PostgreSQL text, so a filter,
    search or admin lookup carrying one (`?status=%00`) would fail in the database with a
    500. No parameter of ours can mean one: every path answers 400 `invalid_query`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            return JsonResponse(
                problem(400, "invalid_query", "The query string holds a NUL character."),
                status=400,
                content_type=PROBLEM_CONTENT_TYPE,
            )
        return self.get_response(request)
