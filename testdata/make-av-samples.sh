#!/usr/bin/env bash
# Rebuilds testdata/samples-av/: short audio and video files in every container the metadata
# handlers support, made by the ffmpeg CLI from synthetic sources (a tone over noise, testsrc2,
# and the public-domain photo), each carrying some ordinary tags. Debian: apt-get install ffmpeg
set -euo pipefail
cd "$(dirname "$0")"
o=samples-av
mkdir -p "$o"
ff() { ffmpeg -v error -y "$@"; }
aud=(-f lavfi -i "sine=frequency=440:duration=2:sample_rate=44100" -f lavfi -i "anoisesrc=d=2:c=pink:a=0.05:r=44100"
     -filter_complex "[0][1]amix=inputs=2,aformat=channel_layouts=stereo" -metadata title="Test tone" -metadata artist="aigc-label")
ff "${aud[@]}" -c:a libmp3lame -b:a 96k -id3v2_version 4 "$o/tone.mp3"
ff "${aud[@]}" -c:a libmp3lame -b:a 96k -id3v2_version 3 "$o/tone-v23.mp3"
ff "${aud[@]}" -c:a pcm_s16le "$o/tone.wav"
ff "${aud[@]}" -c:a flac "$o/tone.flac"
ff "${aud[@]}" -c:a libvorbis -q:a 2 "$o/tone.ogg"
ff "${aud[@]}" -c:a libopus -b:a 48k "$o/tone.opus"
ff "${aud[@]}" -c:a aac -b:a 64k "$o/tone.m4a"
vid=(-f lavfi -i "testsrc2=size=160x120:rate=25:duration=2" -f lavfi -i "sine=frequency=660:duration=2"
     -metadata title="Test clip" -shortest)
ff "${vid[@]}" -c:v libx264 -preset veryfast -crf 30 -c:a aac -b:a 48k -movflags +faststart "$o/clip.mp4"
ff "${vid[@]}" -c:v libx264 -preset veryfast -crf 30 -c:a aac -b:a 48k "$o/clip-moov-last.mp4"
ff "${vid[@]}" -c:v libx264 -preset veryfast -crf 30 -c:a aac -b:a 48k -movflags frag_keyframe+empty_moov+default_base_moof "$o/clip-frag.mp4"
ff -loop 1 -i grace_hopper.jpg -f lavfi -i "sine=frequency=550:duration=2" -vf "scale=160:-2,format=yuv420p" -t 2 \
   -c:v libx264 -preset veryfast -crf 30 -c:a aac -b:a 48k -metadata title="Photo clip" "$o/photo.mov"
ff "${vid[@]}" -c:v libx264 -preset veryfast -crf 30 -c:a libvorbis "$o/clip.mkv"
ff "${vid[@]}" -c:v libvpx-vp9 -b:v 100k -deadline realtime -c:a libopus -b:a 32k "$o/clip.webm"
ff "${vid[@]}" -c:v mpeg4 -q:v 10 -c:a libmp3lame -b:a 64k "$o/clip.avi"
ls -la "$o"
