# tcpb shell integration for zsh: add to ~/.zshrc
#   eval "$(tcpb init zsh)"           # masquerade directory on PATH
#   eval "$(tcpb init zsh --cc)"      # and CC/CXX set to tcpb
# No program runs at start-up beyond `tcpb init` itself.
() {
  local dir=__TCPB_DIR__ cc=__TCPB_CC__
  if [[ -d $dir ]] && (( ! ${path[(Ie)$dir]} )); then
    path=("$dir" $path)
    export PATH
  fi
  if [[ $cc == 1 ]]; then
    export CC="tcpb gcc" CXX="tcpb g++"
  fi
}
