"""Dashboard API: the organizer's view and the shared read-only view return
the same released figures."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from reports import selectors
from surveys import selectors as survey_selectors


class AggregatesOutput(serializers.Serializer):
    class CellOutput(serializers.Serializer):
        unit = serializers.CharField()
        period = serializers.DateField()
        reports = serializers.IntegerField(allow_null=True)
        suppressed = serializers.BooleanField()

    min_group_size = serializers.IntegerField()
    cells = CellOutput(many=True)


def _aggregates(survey) -> dict:
    return AggregatesOutput({"min_group_size": survey.min_group_size,
                             "cells": selectors.released_cells(survey=survey)}).data


class SurveyAggregatesApi(APIView):
    @extend_schema(responses={200: AggregatesOutput})
    def get(self, request, survey_id):
        survey = survey_selectors.survey_get(owner=request.user, survey_id=survey_id)
        return Response(_aggregates(survey))


class SharedAggregatesApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(responses={200: AggregatesOutput}, auth=[])
    def get(self, request, dashboard_token):
        survey = survey_selectors.survey_by_dashboard_token(token=dashboard_token)
        return Response(_aggregates(survey))
