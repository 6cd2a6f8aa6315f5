-- booking.lua as a script of its own, at Redis' time now.
--#include clock
local now = now_us()
--#include booking
