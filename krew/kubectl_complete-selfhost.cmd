@echo off
rem Shell completion for "kubectl selfhost" on Windows: kubectl 1.26 or newer finds
rem kubectl_complete-selfhost.cmd on PATH (through PATHEXT) and passes the typed words.
if exist "%~dp0kubectl-selfhost.exe" (
  "%~dp0kubectl-selfhost.exe" __complete %*
) else (
  kubectl-selfhost.exe __complete %*
)
