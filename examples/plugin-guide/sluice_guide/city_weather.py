from server import ToolError, tool

FORECASTS = {"tokyo": "sunny, 24 °C", "oslo": "snow, -3 °C"}


@tool
async def city_weather(city: str) -> str:
    """Today's weather in a city."""
    forecast = FORECASTS.get(city.lower())
    if forecast is None:
        raise ToolError(f"no forecast for {city!r}; try Tokyo or Oslo")
    return f"{city}: {forecast}"
