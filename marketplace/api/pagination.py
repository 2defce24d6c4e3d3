from rest_framework import pagination
from rest_framework.exceptions import ErrorDetail, ValidationError


class PageNumberPagination(pagination.PageNumberPagination):
    """`{count, next, previous, results}`; `page` and `page_size` (at most 100).

    A `page_size` that is no whole number from 1 is 400 `validation_error` naming it, where
    DRF would quietly answer its default size: a client's mistake shows at once. Above 100
    it is read as 100, as documented."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            detail = ErrorDetail("A whole number from 1 is required.", code="invalid")
            raise ValidationError({self.page_size_query_param: [detail]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:  # whole numbers from 1; a page_size over 100 reads as 100
            parameter["schema"]["minimum"] = 1
        return parameters
